"""What the chart renders: the objects of each scenario, and the operator container's contract."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from charting import (
    CHART,
    CI,
    GOOD_VALUES,
    NAMESPACE,
    environment,
    helm,
    kinds,
    one,
    operator_container,
    render,
)

MONITORING = ("monitoring.coreos.com/v1",)
CRDS = ["CustomResourceDefinition"] * 5


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda path: path.stem)
def test_ci_values_pass_strict_lint(values: Any) -> None:
    result = helm("lint", "--strict", str(CI.parent), "--namespace", NAMESPACE, "--values", str(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_default_values_render_the_operator_and_its_rbac() -> None:
    assert kinds(render("default-values.yaml")) == sorted([
        *CRDS, "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole",
        "ClusterRoleBinding", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
        "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Secret", "Service",
        "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"])


def test_all_on_values_render_every_optional_object() -> None:
    # The monitoring objects need the Prometheus Operator's API: without it they are left out.
    without = kinds(render("all-on-values.yaml"))
    assert "ServiceMonitor" not in without and "PrometheusRule" not in without
    assert kinds(render("all-on-values.yaml", api_versions=MONITORING)) == sorted([
        *without, "ServiceMonitor", "PrometheusRule"])
    assert {"NetworkPolicy", "PodDisruptionBudget", "Secret"} <= set(without)


def test_monitoring_objects_need_their_values_too() -> None:
    found = kinds(render("default-values.yaml", api_versions=MONITORING))
    assert "ServiceMonitor" not in found and "PrometheusRule" not in found


def test_replica_count_two_by_default_and_a_disruption_budget_of_one() -> None:
    manifests = render("default-values.yaml")
    assert one(manifests, "Deployment")["spec"]["replicas"] == 2
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == \
        one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("replicas", ["0", "1"])
def test_no_disruption_budget_without_a_second_replica(replicas: str) -> None:
    assert "PodDisruptionBudget" not in kinds(render("default-values.yaml",
                                                     sets={"replicaCount": replicas}))


def test_deployment_runs_under_the_restricted_pod_security_standard() -> None:
    manifests = render("default-values.yaml")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}}
    container = operator_container(manifests)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    # A read-only root file system with a writable /tmp.
    [tmp] = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    assert {"name": tmp["name"], "emptyDir": {}} in pod["volumes"]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"memory": "512Mi"}}


def test_operator_image_entrypoint_and_pull_policy() -> None:
    container = operator_container(render("default-values.yaml"))
    assert container["image"] == "ghcr.io/durakube/operator:0.1.0"  # the chart's appVersion
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in container and "args" not in container
    tagged = operator_container(render("default-values.yaml", sets={"image.tag": "1.2.3"}))
    assert tagged["image"] == "ghcr.io/durakube/operator:1.2.3"


def test_operator_environment_with_default_values() -> None:
    assert environment(render("default-values.yaml")) == {
        "DURAKUBE_DATABASE_URL_FILE": "/etc/durakube/database/url",
        "DURAKUBE_NAMESPACES": "",
        "DURAKUBE_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_ID": {"fieldRef": {"fieldPath": "metadata.name"}},
        "DURAKUBE_LEASE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "DURAKUBE_LEADER_ELECTION": "true",
        "DURAKUBE_LEASE_NAME": "durakube",
        "DURAKUBE_LEASE_DURATION_SECONDS": "15",
        "DURAKUBE_RENEW_DEADLINE_SECONDS": "10",
        "DURAKUBE_RETRY_PERIOD_SECONDS": "2",
        "DURAKUBE_METRICS_PORT": "8080",
        "DURAKUBE_HEALTH_PORT": "8081",
        "DURAKUBE_WEBHOOK_PORT": "8082",
        "DURAKUBE_WEBHOOK_SECRET_FILE": "/etc/durakube/webhook/secret",
        "DURAKUBE_DEFAULT_QUEUE": "default",
        "DURAKUBE_DEFAULT_CONCURRENCY_LIMIT": "100",
        "DURAKUBE_WORKERS": "32",
        "DURAKUBE_API_QPS": "50", "DURAKUBE_EVENT_QPS": "50", "DURAKUBE_KEY_RING_SIZE": "64",
        "DURAKUBE_INFRASTRUCTURE_RETRY_DELAY": "1", "DURAKUBE_RESYNC_SECONDS": "30",
        "DURAKUBE_LOG_FORMAT": "plain",
        "DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "604800",
        "DURAKUBE_HISTORY_RETENTION": "30d",
        "DURAKUBE_FINISHED_POD_SECONDS": "never",
    }


@pytest.mark.parametrize(("sets", "ttl", "history"), [
    ({"operator.ttlSecondsAfterFinished": "2592000", "operator.historyRetention": "90d"},
     "2592000", "90d"),
    ({"operator.ttlSecondsAfterFinished": "0"}, "0", "30d"),
    ({"operator.ttlSecondsAfterFinished": "never", "operator.historyRetention": "never"},
     "never", "never"),
], ids=["large-ttl-stays-an-integer", "zero", "never"])
def test_retention_values_reach_the_operator(sets: dict[str, str], ttl: str, history: str) -> None:
    env = environment(render("default-values.yaml", sets=sets))
    assert (env["DURAKUBE_TTL_SECONDS_AFTER_FINISHED"], env["DURAKUBE_HISTORY_RETENTION"]) == \
        (ttl, history)


def test_finished_pod_seconds_reach_the_operator() -> None:
    env = environment(render("default-values.yaml", sets={"operator.finishedPodSeconds": "1200000"}))
    assert env["DURAKUBE_FINISHED_POD_SECONDS"] == "1200000"


def test_operator_environment_follows_the_values() -> None:
    env = environment(render("all-on-values.yaml"))
    assert env["DURAKUBE_LEASE_NAME"] == "durakube-leader"
    assert (env["DURAKUBE_METRICS_PORT"], env["DURAKUBE_HEALTH_PORT"], env["DURAKUBE_WEBHOOK_PORT"]) == \
        ("9090", "9091", "9443")
    assert env["DURAKUBE_WEBHOOK_SECRET_FILE"] == "/etc/durakube/webhook/token"
    assert env["DURAKUBE_MIGRATION_DATABASE_URL_FILE"] == "/etc/durakube/migration/dsn"
    assert env["DURAKUBE_WORKER_DATABASE_URL_FILE"] == "/etc/durakube/worker/worker-url"
    assert (env["DURAKUBE_API_QPS"], env["DURAKUBE_API_BURST"], env["DURAKUBE_RESYNC_SECONDS"]) == \
        ("100", "200", "60")
    assert env["DURAKUBE_LOG_FORMAT"] == "json"
    assert env["PYTHONASYNCIODEBUG"] == "1"
    env = environment(render("namespaced-values.yaml", sets={
        "leaderElection.enabled": "false"}))
    assert env["DURAKUBE_NAMESPACES"] == "team-a,team-b"
    assert env["DURAKUBE_DATABASE_URL_FILE"] == "/etc/durakube/database/dsn"
    assert env["DURAKUBE_LEADER_ELECTION"] == "false"
    assert "DURAKUBE_WORKER_DATABASE_URL_FILE" not in env
    assert "DURAKUBE_MIGRATION_DATABASE_URL_FILE" not in env
    assert "DURAKUBE_LIVENESS_PORT" not in env


def test_ports_and_probes_use_the_same_values() -> None:
    manifests = render("all-on-values.yaml")
    container = operator_container(manifests)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http-metrics": 9090, "health": 9091, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    service = one(manifests, "Service")["spec"]["ports"]
    assert {(port["name"], port["port"], port["targetPort"]) for port in service} == {
        ("http-metrics", 9090, "http-metrics"), ("webhook", 9443, "webhook")}


def test_webhook_port_zero_turns_the_webhook_off() -> None:
    manifests = render("all-on-values.yaml", sets={"ports.webhook": "0"})
    assert [port["name"] for port in operator_container(manifests)["ports"]] == ["http-metrics", "health"]
    assert [port["name"] for port in one(manifests, "Service")["spec"]["ports"]] == ["http-metrics"]
    assert len(one(manifests, "NetworkPolicy")["spec"]["ingress"]) == 1


def test_database_url_becomes_a_secret_mounted_as_one_file() -> None:
    manifests = render("default-values.yaml")
    secret = one(manifests, "Secret", "durakube-database")
    assert set(secret["data"]) == {"url"}
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "database"]
    assert volume["secret"] == {"secretName": secret["metadata"]["name"],
                                "items": [{"key": "url", "path": "url"}]}
    [mount] = [mount for mount in operator_container(manifests)["volumeMounts"]
               if mount["name"] == "database"]
    assert mount == {"name": "database", "mountPath": "/etc/durakube/database", "readOnly": True}


def test_existing_database_secret_is_used_as_it_is() -> None:
    manifests = render("namespaced-values.yaml")
    assert [doc["metadata"]["name"] for doc in manifests if doc["kind"] == "Secret"] == \
        ["durakube-webhook"]  # the generated webhook secret; no database Secret
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "database"]
    assert volume["secret"] == {"secretName": "durakube-postgres",
                                "items": [{"key": "dsn", "path": "dsn"}]}


def test_migration_and_worker_logins_are_mounted_from_their_secrets() -> None:
    manifests = render("all-on-values.yaml")
    secret = one(manifests, "Secret")
    # The worker's URL was given as a value: it joins the chart's Secret; the owner's is
    # in a Secret of the user's.
    assert set(secret["data"]) == {"url", "worker-url"}
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume["secret"] for volume in pod["volumes"] if "secret" in volume}
    assert volumes["database-migration"] == {"secretName": "durakube-postgres-owner",
                                             "items": [{"key": "dsn", "path": "dsn"}]}
    assert volumes["database-worker"] == {"secretName": secret["metadata"]["name"],
                                          "items": [{"key": "worker-url", "path": "worker-url"}]}
    mounts = {mount["name"]: mount["mountPath"]
              for mount in operator_container(manifests)["volumeMounts"]}
    assert (mounts["database-migration"], mounts["database-worker"]) == (
        "/etc/durakube/migration", "/etc/durakube/worker")


def webhook_volume(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "webhook"]
    return dict(volume["secret"])


def test_a_given_webhook_secret_is_mounted_and_none_generated() -> None:
    manifests = render("all-on-values.yaml")
    assert webhook_volume(manifests) == {"secretName": "durakube-webhook",
                                         "items": [{"key": "token", "path": "token"}]}
    assert [doc["metadata"]["name"] for doc in manifests if doc["kind"] == "Secret"] == \
        ["durakube-database"]


def test_the_chart_generates_a_webhook_secret_by_default() -> None:
    manifests = render("default-values.yaml")
    secret = one(manifests, "Secret", "durakube-webhook")
    value = base64.b64decode(secret["data"]["secret"]).decode()
    assert len(value) == 48 and value.isalnum()
    assert webhook_volume(manifests) == {"secretName": "durakube-webhook",
                                         "items": [{"key": "secret", "path": "secret"}]}
    assert environment(manifests)["DURAKUBE_WEBHOOK_SECRET_FILE"] == "/etc/durakube/webhook/secret"
    # helm template sees no cluster: each render stands for a first install.
    again = one(render("default-values.yaml"), "Secret", "durakube-webhook")
    assert again["data"]["secret"] != secret["data"]["secret"]


def test_no_webhook_no_webhook_secret() -> None:
    manifests = render("default-values.yaml", sets={"ports.webhook": "0"})
    assert "DURAKUBE_WEBHOOK_SECRET_FILE" not in environment(manifests)
    assert [doc["metadata"]["name"] for doc in manifests if doc["kind"] == "Secret"] == \
        ["durakube-database"]


def test_api_burst_is_omitted_when_unset() -> None:
    assert "DURAKUBE_API_BURST" not in environment(render("default-values.yaml"))


def test_network_policy_admits_the_configured_peers_per_port() -> None:
    policy = one(render("all-on-values.yaml"), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in policy["ingress"]}
    assert by_port == {
        "http-metrics": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
        "webhook": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "ingress-nginx"}}}]}


def test_default_anti_affinity_and_spread_constraints_select_the_operator() -> None:
    manifests = render("all-on-values.yaml")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    selector = one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    [spread] = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": selector}
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_service_monitor_scrapes_the_metrics_port_of_the_release() -> None:
    manifests = render("all-on-values.yaml", api_versions=MONITORING)
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == \
        {k: v for k, v in one(manifests, "Service")["metadata"]["labels"].items()
         if k in monitor["spec"]["selector"]["matchLabels"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{
        "port": "http-metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s",
        "honorLabels": True}]


def test_prometheus_rule_alerts_on_the_operators_metrics() -> None:
    rule = one(render("all-on-values.yaml", api_versions=MONITORING), "PrometheusRule")
    alerts = {alert["alert"]: alert for group in rule["spec"]["groups"] for alert in group["rules"]}
    assert set(alerts) == {"DurakubeOperatorAbsent", "DurakubeOperatorNotLeading",
                           "DurakubePostgresUnreachable", "DurakubeReconcileErrors",
                           "DurakubeReconcilerStuck", "DurakubeAttemptPodsNotCreated",
                           "DurakubeAdmissionStalled", "DurakubeQueueBacklog",
                           "DurakubeRunsFailing", "DurakubeAttemptsOOMKilled"}
    assert alerts["DurakubeOperatorNotLeading"]["expr"] == \
        'max(durakube_operator_leader{job="durakube"}) < 1'
    assert alerts["DurakubeOperatorNotLeading"]["for"] == "5m"
    assert alerts["DurakubeQueueBacklog"]["expr"].startswith('durakube_queue_waiting{job="durakube"} > 500')
    assert alerts["DurakubeRunsFailing"]["expr"].endswith("> 0.5")
    # Prometheus's own templates reach the rule unexpanded by helm.
    assert "{{ $labels.namespace }}" in alerts["DurakubeQueueBacklog"]["annotations"]["summary"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}


def test_grafana_dashboard_ships_in_a_configmap_for_the_sidecar() -> None:
    assert not [doc for doc in render("default-values.yaml") if doc["kind"] == "ConfigMap"]
    config_map = one(render("all-on-values.yaml"), "ConfigMap")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Durakube"}
    shipped = json.loads(config_map["data"]["durakube.json"])
    assert shipped == json.loads((CHART / "dashboards" / "durakube.json").read_text())
    # Grafana's sidecar may watch only its own namespace.
    elsewhere = one(render("all-on-values.yaml", sets={"grafanaDashboard.namespace": "monitoring"}),
                    "ConfigMap")
    assert elsewhere["metadata"]["namespace"] == "monitoring"


def test_long_release_names_are_cut_at_63_characters() -> None:
    release = ("long-release-name-" * 3)[:53]  # helm's own limit
    text = helm("template", release, str(CI.parent), "--namespace", NAMESPACE,
                "--values", str(CI / "all-on-values.yaml"), "--api-versions", MONITORING[0],
                "--set", "nameOverride=operator-of-durable-tasks").stdout
    names = set()
    for doc in (doc for doc in yaml.safe_load_all(text) if doc):
        name = doc["metadata"]["name"]
        key = (doc["kind"], doc["metadata"].get("namespace"), name)
        assert key not in names, f"two objects are {key}"
        names.add(key)
        assert len(name) <= 63 and not name.endswith("-"), name
        for value in doc["metadata"].get("labels", {}).values():
            assert len(value) <= 63, value
    # The cut falls before the suffixes, which keep the names apart.
    for suffix in ("-crds", "-view", "-edit", "-leader-election", "-database", "-dashboard"):
        assert any(name.endswith(suffix) for _, _, name in names), suffix
