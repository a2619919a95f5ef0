{{/*
Names and labels shared by every template. Kubernetes names and label values are
limited to 63 characters, so every name is truncated there (and a trailing "-" that
the cut may leave is trimmed).
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "durakube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: fullnameOverride, else the release name when it already
contains the chart's name (a release called "durakube" is not "durakube-durakube"),
else "<release>-<chart>".
*/}}
{{- define "durakube.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name: "<fullname>-<suffix>", within 63 characters. */}}
{{- define "durakube.suffixed" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "durakube.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* "<chart>-<version>", for the helm.sh/chart label. */}}
{{- define "durakube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "durakube.labels" -}}
helm.sh/chart: {{ include "durakube.chart" . }}
{{ include "durakube.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: durakube
{{- end }}

{{/* Labels that select the operator's pods; they never change across upgrades. */}}
{{- define "durakube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "durakube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "durakube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "durakube.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The coordination.k8s.io Lease the replicas elect their leader with. */}}
{{- define "durakube.leaseName" -}}
{{- default (include "durakube.fullname" .) .Values.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret that holds the operator's Postgres URL: the chart's own, or the user's. */}}
{{- define "durakube.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- include "durakube.suffixed" (list . "database") }}
{{- end }}
{{- end }}

{{- define "durakube.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
url
{{- end }}
{{- end }}

{{/* The Secret that holds the webhook's shared secret: the user's, or the one the chart
generates (webhook-secret.yaml). */}}
{{- define "durakube.webhookSecretName" -}}
{{- if .Values.webhook.existingSecret }}
{{- .Values.webhook.existingSecret }}
{{- else }}
{{- include "durakube.suffixed" (list . "webhook") }}
{{- end }}
{{- end }}

{{- define "durakube.webhookSecretKey" -}}
{{- if .Values.webhook.existingSecret }}
{{- .Values.webhook.existingSecretKey }}
{{- else -}}
secret
{{- end }}
{{- end }}

{{/* The chart's own database Secret: made when any login is given as a URL. */}}
{{- define "durakube.chartDatabaseSecretName" -}}
{{- include "durakube.suffixed" (list . "database") }}
{{- end }}

{{/*
The Secret and key of an optional login (migration, worker): its existingSecret, the
chart's Secret when given as a URL, or nothing. Called with (list $ "migration").
*/}}
{{- define "durakube.loginSecretName" -}}
{{- $root := index . 0 }}
{{- $login := index $root.Values.database (index . 1) }}
{{- if $login.existingSecret }}
{{- $login.existingSecret }}
{{- else if $login.url }}
{{- include "durakube.chartDatabaseSecretName" $root }}
{{- end }}
{{- end }}

{{- define "durakube.loginSecretKey" -}}
{{- $root := index . 0 }}
{{- $login := index $root.Values.database (index . 1) }}
{{- if $login.existingSecret }}
{{- $login.existingSecretKey }}
{{- else -}}
{{- index . 1 }}-url
{{- end }}
{{- end }}

{{/* The image reference: the tag defaults to the chart's appVersion. */}}
{{- define "durakube.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The operator's namespaced permissions, shared by the ClusterRole (cluster-wide mode)
and by the Role in each watched namespace. charts/durakube/permissions.yaml explains
each rule, and the chart's tests keep the two in step.
*/}}
{{- define "durakube.namespacedRules" -}}
- apiGroups: ["durakube.io"]
  resources: ["taskruns"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["durakube.io"]
  resources: ["tasks", "taskqueues", "taskevents", "taskschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["durakube.io"]
  resources: ["taskruns/status", "taskqueues/status", "taskevents/status", "taskschedules/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "delete"]
{{- end }}

{{/*
Labels that select the run dashboard's pods (runDashboard): a name of their own, so
that the operator's selectors (its Service, PodDisruptionBudget, NetworkPolicy)
never take them in.
*/}}
{{- define "durakube.runDashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-run-dashboard" (include "durakube.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the run dashboard's objects. */}}
{{- define "durakube.runDashboardLabels" -}}
helm.sh/chart: {{ include "durakube.chart" . }}
{{ include "durakube.runDashboardSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: durakube
app.kubernetes.io/component: run-dashboard
{{- end }}

{{/* The run dashboard's read-only permissions, in a ClusterRole or a Role per namespace. */}}
{{- define "durakube.runDashboardRules" -}}
- apiGroups: ["durakube.io"]
  resources: ["taskruns", "tasks", "taskqueues"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods", "pods/log", "events"]
  verbs: ["get", "list"]
{{- end }}
