"""The process node's --node-labels and --register-with-taints, read as the kubelet reads them."""

from __future__ import annotations

import pytest

from devcluster.node import agent

REQUIRED = ["--kubeconfig", "k", "--node-name", "n", "--state-dir", "s", "--serving-cert", "c",
            "--serving-key", "k", "--apiserver-port", "6443"]


def test_labels_and_taints_reach_the_settings() -> None:
    config = agent.parse_arguments([
        *REQUIRED, "--node-labels", "pool=a,zone=",
        "--register-with-taints", "pool=a:NoSchedule,dedicated:NoExecute"])
    assert config.labels == {"pool": "a", "zone": ""}
    assert config.taints == [{"key": "pool", "value": "a", "effect": "NoSchedule"},
                             {"key": "dedicated", "effect": "NoExecute"}]


def test_a_node_without_them_registers_with_none() -> None:
    config = agent.parse_arguments(REQUIRED)
    assert config.labels == {}
    assert config.taints == []


@pytest.mark.parametrize("argument", ["pool=a", "pool=a:Sometimes", ":NoSchedule", "=a:NoSchedule"])
def test_a_taint_without_key_or_known_effect_is_refused(argument: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        agent.parse_arguments([*REQUIRED, "--register-with-taints", argument])
    assert "key[=value]:Effect" in capsys.readouterr().err


@pytest.mark.parametrize("argument", ["pool", "=a"])
def test_a_label_without_key_and_value_is_refused(argument: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        agent.parse_arguments([*REQUIRED, "--node-labels", argument])
    assert "not key=value" in capsys.readouterr().err
