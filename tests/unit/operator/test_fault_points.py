"""Fault points: armed only by name and namespace, refused when unknown, ending the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from durakube_operator import faults, settings


@pytest.fixture(autouse=True)
def disarmed() -> object:
    yield
    faults.arm(())


def test_nothing_is_armed_by_default() -> None:
    config = settings.Settings.from_environ({"DURAKUBE_DATABASE_URL": "postgresql://db/d"})
    assert config.fault_points == ()
    faults.arm(config.fault_points)
    assert not any(faults.armed(point, "anywhere") for point in faults.POINTS)


def test_a_point_is_armed_for_the_namespaces_its_prefix_names() -> None:
    faults.arm(["pod-created@faults-", "run-woken"])
    assert faults.armed("pod-created", "faults-abc")
    assert not faults.armed("pod-created", "shop")
    assert faults.armed("run-woken", "shop")
    assert not faults.armed("child-created", "faults-abc")


def test_an_unknown_point_stops_the_operator_at_start() -> None:
    with pytest.raises(settings.SettingsError, match="DURAKUBE_FAULT_POINTS"):
        settings.Settings.from_environ({"DURAKUBE_DATABASE_URL": "postgresql://db/d",
                                        "DURAKUBE_FAULT_POINTS": "pod-created,pod-exploded"})


def test_reaching_an_armed_point_ends_the_process_at_once() -> None:
    code = ("from durakube_operator import faults\n"
            "faults.arm(['slot-granted@faults-'])\n"
            "faults.reach('slot-granted', 'other')\n"
            "print('passed the point of another namespace', flush=True)\n"
            "faults.reach('slot-granted', 'faults-1')\n"
            "print('never printed')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == faults.EXIT_CODE
    assert result.stdout == "passed the point of another namespace\n"
