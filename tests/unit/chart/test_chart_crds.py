"""The chart's CRD templates render the CRDs of crds/, behind crds.install and crds.keep."""

from __future__ import annotations

import pytest
import yaml
from charting import ROOT, kinds, render

KEEP = "helm.sh/resource-policy"


def _crds(**sets: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in render("default-values.yaml", sets=sets)
            if doc["kind"] == "CustomResourceDefinition"}


def test_rendered_crds_are_those_of_the_crds_folder() -> None:
    rendered = _crds()
    committed = {crd["metadata"]["name"]: crd for crd in
                 (yaml.safe_load(path.read_text()) for path in sorted((ROOT / "crds").glob("*.yaml")))}
    assert set(rendered) == set(committed) and len(rendered) == 5
    for name, crd in rendered.items():
        assert crd["apiVersion"] == committed[name]["apiVersion"]
        assert crd["spec"] == committed[name]["spec"], f"{name} renders another spec than crds/"


def test_crds_are_kept_on_uninstall_by_default() -> None:
    for crd in _crds().values():
        assert crd["metadata"]["annotations"] == {KEEP: "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_keep_false_drops_the_keep_policy() -> None:
    for crd in _crds(**{"crds.keep": "false"}).values():
        assert KEEP not in (crd["metadata"].get("annotations") or {})


@pytest.mark.parametrize("keep", ["true", "false"])
def test_crds_install_false_renders_no_crd(keep: str) -> None:
    manifests = render("default-values.yaml", sets={"crds.install": "false", "crds.keep": keep})
    assert "CustomResourceDefinition" not in kinds(manifests)
    assert "Deployment" in kinds(manifests)
