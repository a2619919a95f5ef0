"""The CLI's argument parsing: global flags before or after the command, payload sources."""

from __future__ import annotations

import sys

import pytest

import durakube
from durakube import cli


@pytest.mark.parametrize("argv", [
    ["-n", "team-a", "-o", "json", "get", "r-1"],
    ["get", "r-1", "-n", "team-a", "-o", "json"],
    ["--namespace", "team-a", "get", "-o", "json", "r-1"],
], ids=["before", "after", "mixed"])
def test_global_flags_anywhere(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.namespace, args.output, args.run) == ("team-a", "json", "r-1")


def test_payload_and_payload_file_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["trigger", "t", "--payload", "{}", "--payload-file", "f"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_manifests_needs_an_image(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DURAKUBE_IMAGE", raising=False)
    assert cli.main(["manifests", "json", "--image", ""]) == 1
    assert "--image is required" in capsys.readouterr().err


def test_no_command_prints_help() -> None:
    assert cli.main([]) == 2


def test_dashboard_listens_on_this_machine_only_by_default() -> None:
    args = cli.build_parser().parse_args(["dashboard"])
    assert (args.address, args.port, args.all_namespaces, args.read_only) == (
        "127.0.0.1", 8600, False, False)
    args = cli.build_parser().parse_args(["dashboard", "-A", "--port", "9000", "--read-only"])
    assert (args.port, args.all_namespaces, args.read_only) == (9000, True, True)


def test_dashboard_without_its_extra_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # None in sys.modules makes `import` fail as a missing package would (and the package
    # must not hold the module as an attribute from an earlier import).
    monkeypatch.setitem(sys.modules, "durakube.dashboard", None)
    monkeypatch.delattr(durakube, "dashboard", raising=False)
    assert cli.main(["dashboard"]) == 1
    assert "pip install 'durakube[dashboard]'" in capsys.readouterr().err


def test_replay_takes_a_fork_step_and_the_latest_task() -> None:
    args = cli.build_parser().parse_args(["replay", "r-1"])
    assert (args.run, args.latest, args.from_step) == ("r-1", False, None)
    args = cli.build_parser().parse_args(["replay", "r-1", "--from-step", "3", "--latest"])
    assert (args.run, args.latest, args.from_step) == ("r-1", True, 3)


def test_replay_help_says_what_is_pinned_and_what_a_fork_reuses(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["replay", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--latest" in shown and "--from-step N" in shown
    assert "pinned" in shown and "ctx.state" in shown
