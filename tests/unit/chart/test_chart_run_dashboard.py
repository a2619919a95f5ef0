"""The chart's run dashboard (`runDashboard`): off by default; on, a read-only
`durakube dashboard` with read-only RBAC of its own, apart from the operator's pods."""

from __future__ import annotations

from typing import Any

from charting import NAMESPACE, RELEASE, kinds, one, render

NAME = f"{RELEASE}-run-dashboard"
READ_VERBS = {"get", "list", "watch"}


def dashboard_objects(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in manifests if doc["metadata"]["name"] == NAME]


def test_off_by_default() -> None:
    assert dashboard_objects(render("default-values.yaml")) == []


def test_cluster_wide_it_reads_every_namespace_and_offers_no_action() -> None:
    manifests = render("default-values.yaml", sets={"runDashboard.enabled": "true"})
    assert kinds(dashboard_objects(manifests)) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    deployment = one(manifests, "Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["durakube", "dashboard", "--read-only", "--address=0.0.0.0",
                                    "--port=8600", "--all-namespaces"]
    assert pod["serviceAccountName"] == NAME
    database = {var["name"]: var for var in container["env"]}["DURAKUBE_DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"]["name"] == f"{RELEASE}-database"
    # The same restricted security context as the operator's.
    operator = one(manifests, "Deployment", RELEASE)["spec"]["template"]["spec"]
    assert container["securityContext"] == operator["containers"][0]["securityContext"]
    assert pod["securityContext"] == operator["securityContext"]
    service = one(manifests, "Service", NAME)["spec"]
    assert service["ports"] == [{"name": "http", "port": 8600, "targetPort": "http",
                                 "protocol": "TCP"}]


def test_its_pods_are_none_of_the_operators() -> None:
    manifests = render("default-values.yaml", sets={"runDashboard.enabled": "true"})
    labels = one(manifests, "Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    for selector in (one(manifests, "Service", RELEASE)["spec"]["selector"],
                     one(manifests, "Deployment", RELEASE)["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= labels.items()
    assert one(manifests, "Service", NAME)["spec"]["selector"].items() <= labels.items()


def test_its_permissions_only_read_runs_tasks_queues_pods_logs_and_events() -> None:
    manifests = render("default-values.yaml", sets={"runDashboard.enabled": "true"})
    rules = one(manifests, "ClusterRole", NAME)["rules"]
    assert {(group, resource) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"]} == {
        ("durakube.io", "taskruns"), ("durakube.io", "tasks"), ("durakube.io", "taskqueues"),
        ("", "pods"), ("", "pods/log"), ("", "events")}
    assert {verb for rule in rules for verb in rule["verbs"]} <= READ_VERBS
    binding = one(manifests, "ClusterRoleBinding", NAME)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]


def test_namespaced_mode_grants_a_role_per_watched_namespace() -> None:
    manifests = render("run-dashboard-values.yaml")
    objects = dashboard_objects(manifests)
    assert "ClusterRole" not in kinds(objects) and "ClusterRoleBinding" not in kinds(objects)
    roles = {doc["metadata"]["namespace"] for doc in objects if doc["kind"] == "Role"}
    bindings = {doc["metadata"]["namespace"] for doc in objects if doc["kind"] == "RoleBinding"}
    assert roles == bindings == {"team-a", "team-b"}
    deployment = one(manifests, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][-2:] == ["--port=9600", "--namespace=team-a"]
    database = {var["name"]: var for var in container["env"]}["DURAKUBE_DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"] == {"name": "durakube-postgres", "key": "dsn"}
