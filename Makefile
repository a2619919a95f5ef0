# Durakube: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed from this file and the three pyproject.toml files:
# the SDK (sdk/), the operator (operator/) and the test bed with the dev tools (.).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Control-plane and helm builds are cached outside the tree, once per machine.
export DURAKUBE_CACHE ?= $(HOME)/.cache/durakube

.PHONY: setup lock controlplane helm prometheus chromium realnode-packages images crds dashboards test test-unit test-e2e test-realnode lint demo cluster-up cluster-down bench bench-suspended bench-pods bench-resume bench-retention clean

setup: $(STAMP)

$(STAMP): pyproject.toml sdk/pyproject.toml operator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# Reinstalled whole: a console script that moved between the projects must not be
	@# removed by the uninstall of its previous owner.
	$(BIN)/pip uninstall --quiet --yes durakube durakube-operator durakube-devcluster 2>/dev/null || true
	$(BIN)/pip install --quiet -e './sdk[dashboard,tracing]' -e ./operator -e '.[dev]'
	touch $@

# The images' pinned and hashed dependencies (Python 3.11, linux x86_64), resolved
# from the pyproject files; run after changing a dependency and commit the result.
# Existing pins are kept where they still fit; `make lock LOCK_FLAGS=--upgrade`
# moves every pin to the newest release.
LOCK_FLAGS ?=
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' $(LOCK_FLAGS)

lock: setup
	$(UV_COMPILE) sdk/pyproject.toml --extra tracing -o requirements/worker.lock
	$(UV_COMPILE) operator/pyproject.toml --no-emit-package durakube -o requirements/operator.lock
	$(UV_COMPILE) requirements/build.in -o requirements/build.lock

# Compiles etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the kubelet and
# kube-proxy into one binary from the Go module proxy (devcluster/controlplane/go.mod
# pins the versions).
controlplane: $(STAMP)
	$(BIN)/python -m devcluster.build controlplane

# Compiles the helm CLI from its Go module (devcluster/helm/go.mod pins the version), for
# the chart's tests and the demo.
helm: $(STAMP)
	$(BIN)/python -m devcluster.build helm

# Prometheus and promtool from Debian, for the tests of the alerts and the dashboard's
# queries (tests/unit/chart/test_chart_alerts.py, tests/e2e/operator/test_dashboard_queries.py).
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
		apt-get install -y --no-install-recommends prometheus || \
		(apt-get update && apt-get install -y --no-install-recommends prometheus)

# Debian's Chromium, for the dashboard's browser tests (tests/e2e/dashboard/), which
# drive /usr/bin/chromium with Playwright; Playwright's own browser download is never used.
chromium:
	@command -v chromium >/dev/null || \
		apt-get install -y --no-install-recommends chromium || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)

# The real node's runtime from Debian: containerd, runc and the CNI plugins, and the
# image builders buildah and debootstrap (devcluster/realnode/).
REALNODE_PACKAGES := containerd runc containernetworking-plugins iptables buildah debootstrap
realnode-packages:
	@command -v containerd >/dev/null && command -v runc >/dev/null && command -v buildah >/dev/null \
		&& command -v debootstrap >/dev/null && test -x /usr/lib/cni/bridge || \
		apt-get install -y --no-install-recommends $(REALNODE_PACKAGES) || \
		(apt-get update && apt-get install -y --no-install-recommends $(REALNODE_PACKAGES))

# The real node's images from the project's Dockerfiles, on a Debian base made with
# debootstrap, cached by content in $(DURAKUBE_CACHE)/images (the first build takes
# minutes; a warm run builds nothing).
images: setup realnode-packages
	$(BIN)/python -m devcluster.realnode.images

# Regenerates crds/ and the chart's CRD templates from sdk/durakube/resources.py.
crds: setup
	$(BIN)/python -m durakube.crds crds --chart charts/durakube

# Regenerates the chart's Grafana dashboard from devcluster/dashboards.py.
dashboards: setup
	$(BIN)/python -m devcluster.dashboards charts/durakube/dashboards/durakube.json

# --durations: the slowest tests, so that the suite stays within its time.
test: setup controlplane helm prometheus chromium images
	$(BIN)/pytest -q --durations=25

test-unit: setup prometheus
	$(BIN)/pytest -q tests/unit

test-e2e: setup controlplane helm prometheus chromium images
	$(BIN)/pytest -q tests/e2e

# Only the tests that run on the real node (kubelet, containerd, the project's images).
test-realnode: setup controlplane helm images
	$(BIN)/pytest -q -m realnode tests/e2e/realnode

lint: setup
	$(BIN)/ruff check sdk operator devcluster tests bench examples
	$(BIN)/mypy sdk/durakube operator/durakube_operator

demo: setup controlplane helm
	$(BIN)/python -m devcluster.demo

cluster-up: setup controlplane
	$(BIN)/durakube-devcluster up

cluster-down: setup
	$(BIN)/durakube-devcluster down

# Every scale goal's figure beside its peer measured in the same run, and the ratio (see
# each script's docstring; about 45 minutes on 2 cores): the step checkpoint against a
# bare INSERT+COMMIT and DBOS Transact; pod starts, CPU per run and admission latency
# against the Job controller; resume after a worker's death; 10,000 runs present
# against the idle operator; batch triggers against one-by-one creates.
bench: setup controlplane
	$(BIN)/python bench/step_checkpoint.py
	$(BIN)/python bench/pod_throughput.py
	$(BIN)/python bench/resume_latency.py
	$(BIN)/python bench/suspended_runs.py --suspended 1000 --finished 9000
	$(BIN)/python bench/batch_trigger.py

# 10,000 runs present, 1,000 suspended (one pod each first) and 9,000 finished: the
# operator's memory, quiet CPU and passes against its idle self, and after a restart
# (~15 minutes; all 10,000 suspended: --suspended 10000 --finished 0, about an hour).
bench-suspended: setup controlplane
	$(BIN)/python bench/suspended_runs.py --suspended 1000 --finished 9000

# 500 TaskRuns against 500 Jobs on one test bed, three rounds a side (the median shown):
# pods/s, CPU and API requests per pod, and created-to-pod latency at 20/s, at equal
# client QPS (~13 minutes).
bench-pods: setup controlplane
	$(BIN)/python bench/pod_throughput.py

# A worker SIGKILLed: its replacement pod, the operator against the Job controller.
bench-resume: setup controlplane
	$(BIN)/python bench/resume_latency.py

# 10,000 runs a side through the operator with a short TTL and without: TaskRuns, pods,
# Secrets and Postgres rows over time, and `kubectl get taskruns` (instant runs, at a
# rate the operator keeps up with on 2 cores: about 35 minutes; a smaller check with
# real pods: bench/retention.py --runs 300 --rate 1).
bench-retention: setup controlplane
	$(BIN)/python bench/retention.py --runs 10000 --rate 5 --mode instant --every 60

clean:
	rm -rf $(VENV) .devcluster .pytest_cache .mypy_cache .ruff_cache
