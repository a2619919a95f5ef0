"""The operator's RBAC is exactly charts/durakube/permissions.yaml, in both modes, and
the README's permission table says the same."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from charting import CHART, GOOD_VALUES, NAMESPACE, RELEASE, one, render

PERMISSIONS = yaml.safe_load((CHART / "permissions.yaml").read_text())
CLUSTER_SCOPED = {"customresourcedefinitions", "tokenreviews", "subjectaccessreviews"}
# Permission: (API group, resource, verb, resource name or "", scope).
Permission = tuple[str, str, str, str, str]


def granted(manifests: list[dict[str, Any]], service_account: str = RELEASE) -> set[Permission]:
    """Every permission the rendered bindings give the operator's ServiceAccount, with its
    scope: "cluster", "watched" (a ClusterRole on namespaced resources), "release" or
    "namespace:<name>" (a Role)."""
    roles = {(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]): doc
             for doc in manifests if doc["kind"] in ("Role", "ClusterRole")}
    found: set[Permission] = set()
    for binding in manifests:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE} \
                not in binding["subjects"]:
            continue
        namespace = binding["metadata"].get("namespace")
        role = roles[(binding["roleRef"]["kind"],
                      namespace if binding["roleRef"]["kind"] == "Role" else None,
                      binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    if binding["kind"] == "ClusterRoleBinding":
                        scope = "cluster" if resource in CLUSTER_SCOPED else "watched"
                    else:
                        scope = "release" if namespace == NAMESPACE else f"namespace:{namespace}"
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [""]:
                            found.add((group, resource, verb, name, scope))
    return found


def expected(values: dict[str, Any]) -> set[Permission]:
    """permissions.yaml for the given values: the rules whose `when` holds, with their
    scope resolved for the mode."""
    found: set[Permission] = set()
    for entry in PERMISSIONS["operator"]:
        if "when" in entry:
            section, key = entry["when"].split(".")
            if not values[section][key]:
                continue
        names = [name.format(leaseName=values["leaderElection"]["leaseName"] or RELEASE)
                 for name in entry.get("resourceNames", [""])]
        if entry["scope"] == "watched" and values["watchNamespaces"]:
            scopes = [f"namespace:{namespace}" for namespace in values["watchNamespaces"]]
        else:
            scopes = [entry["scope"]]
        found |= {(entry["apiGroup"], entry["resource"], verb, name, scope)
                  for verb in entry["verbs"] for name in names for scope in scopes}
    return found


def _values(*overrides: dict[str, Any]) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for override in overrides:
        for section, settings in override.items():
            if isinstance(settings, dict):
                values[section] = {**values[section], **settings}
            else:
                values[section] = settings
    return values


MODES = {
    "cluster-wide": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "no-leader-election": {"leaderElection": {"enabled": False}, "replicaCount": 1},
    "named-lease": {"leaderElection": {"leaseName": "durakube-leader"}},
}


def _sets(override: dict[str, Any]) -> dict[str, str]:
    sets = {}
    for section, settings in override.items():
        if isinstance(settings, dict):
            sets |= {f"{section}.{key}": str(value).lower() for key, value in settings.items()}
        elif isinstance(settings, list):
            sets[section] = "{" + ",".join(settings) + "}"
        else:
            sets[section] = str(settings)
    return sets


@pytest.mark.parametrize("override", MODES.values(), ids=MODES.keys())
def test_operator_gets_exactly_the_documented_permissions(override: dict[str, Any]) -> None:
    manifests = render("default-values.yaml", sets=_sets(override))
    assert granted(manifests) == expected(_values(override))


def test_namespaced_mode_grants_a_role_per_namespace_and_nothing_namespaced_cluster_wide() -> None:
    manifests = render("namespaced-values.yaml")
    roles = {(doc["metadata"]["namespace"], doc["metadata"]["name"])
             for doc in manifests if doc["kind"] == "Role"}
    assert roles == {("team-a", RELEASE), ("team-b", RELEASE),
                     (NAMESPACE, f"{RELEASE}-leader-election")}
    for doc in manifests:
        if doc["kind"] == "ClusterRole" and not doc["metadata"]["name"].endswith(("-view", "-edit")):
            resources = {resource for rule in doc["rules"] for resource in rule["resources"]}
            assert resources <= CLUSTER_SCOPED, doc["metadata"]["name"]
    assert {scope for *_, scope in granted(manifests)} == {
        "cluster", "release", "namespace:team-a", "namespace:team-b"}


def test_cluster_wide_mode_grants_one_cluster_role() -> None:
    manifests = render("default-values.yaml")
    assert [doc["metadata"]["namespace"] for doc in manifests if doc["kind"] == "Role"] == [NAMESPACE]
    one(manifests, "ClusterRoleBinding", RELEASE)


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda path: path.stem)
def test_no_rule_uses_a_wildcard(values: Any) -> None:
    for doc in render(values, sets={"rbac.aggregateRoles": "true"}):
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (doc["metadata"], rule)


def test_operator_never_reads_secrets() -> None:
    secrets = {verb for group, resource, verb, _, _ in granted(render("all-on-values.yaml"))
               if resource == "secrets"}
    assert secrets == {"create", "delete"}


def test_the_operator_may_delete_only_key_ring_secrets() -> None:
    manifests = render("default-values.yaml")
    policy = one(manifests, "ValidatingAdmissionPolicy", f"{RELEASE}-key-rings")
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["secrets"], ["DELETE"])
    [condition] = policy["spec"]["matchConditions"]
    assert f'"system:serviceaccount:{NAMESPACE}:{RELEASE}"' in condition["expression"]
    assert "durakube.io/key-ring" in policy["spec"]["validations"][0]["expression"]
    binding = one(manifests, "ValidatingAdmissionPolicyBinding", f"{RELEASE}-key-rings")
    assert binding["spec"] == {"policyName": f"{RELEASE}-key-rings", "validationActions": ["Deny"]}
    off = render("default-values.yaml", sets={"rbac.create": "false"})
    assert not [doc for doc in off if doc["kind"].startswith("ValidatingAdmissionPolicy")]


def test_rbac_off_renders_no_rbac() -> None:
    manifests = render("default-values.yaml", sets={"rbac.create": "false", "rbac.aggregateRoles": "false"})
    assert not [doc for doc in manifests if doc["kind"].endswith(("Role", "RoleBinding"))]


def test_aggregated_roles_for_people() -> None:
    manifests = render("default-values.yaml")
    for entry in PERMISSIONS["people"]:
        role = one(manifests, "ClusterRole", entry["role"].format(fullname=RELEASE))
        labels = role["metadata"]["labels"]
        assert {key.rsplit("-", 1)[-1] for key, value in labels.items()
                if key.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"} == \
            set(entry["aggregatesTo"])
        assert [(rule["apiGroups"], sorted(rule["resources"]), sorted(rule["verbs"]))
                for rule in role["rules"]] == \
            [([entry["apiGroup"]], sorted(entry["resources"]), sorted(entry["verbs"]))]
    assert "durakube-view" in {doc["metadata"]["name"] for doc in manifests}
    off = render("default-values.yaml", sets={"rbac.aggregateRoles": "false"})
    assert not [doc for doc in off if doc["metadata"]["name"].endswith(("-view", "-edit"))]


def _readme_table() -> list[list[str]]:
    text = (CHART / "README.md").read_text()
    table = text.split("### Every permission, and why", 1)[1].split("\n\n| API group |", 1)[1]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_readme_table_says_what_permissions_yaml_says() -> None:
    rows = _readme_table()
    assert len(rows) == len(PERMISSIONS["operator"])
    for row, entry in zip(rows, PERMISSIONS["operator"], strict=True):
        group, resource, verbs, scope, why = row
        assert group == (entry["apiGroup"] or '"" (core)')
        assert resource.split()[0] == entry["resource"]
        assert ("(only the one named" in resource) == ("resourceNames" in entry)
        assert verbs.split(", ") == entry["verbs"]
        assert re.sub(r" namespaces?$", "", scope.split(",")[0]) == entry["scope"]
        assert scope.partition(", ")[2] == (f"when `{entry['when']}`" if "when" in entry else ""), scope
        assert why == entry["why"]
