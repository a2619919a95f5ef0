"""The run page and `durakube get` name where a replayed or forked run came from and the
image it is pinned to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from durakube.client import handles, tables
from durakube.dashboard import reading, rendering

DIGEST = "sha256:" + "ab" * 32
BODY: dict[str, Any] = {
    "metadata": {"name": "report-fork", "namespace": "team-a", "uid": "uid-2",
                 "creationTimestamp": "2026-11-01T00:00:00Z"},
    "spec": {"taskRef": {"name": "report"}, "payload": {},
             "replayOf": {"run": "report-x", "runId": "uid-1", "fromStep": 3, "latest": False}},
    "status": {"phase": "Running", "attempt": 1,
               "pinned": {"image": "registry.example/report:1", "imageDigest": DIGEST,
                          "entrypoint": "report"}},
}


def test_a_fork_names_its_run_and_step_and_its_pinned_image() -> None:
    run = handles.summarize_taskrun(BODY)
    assert run.replay_of == BODY["spec"]["replayOf"]
    assert run.pinned_image == f"registry.example/report@{DIGEST}"
    html = rendering.render(rendering.build_environment(), "run_live.html",
                            page=reading.RunPage(run=run, body=BODY), csrf="s", read_only=False,
                            refresh_seconds=3, has_database=True)
    assert '<a href="/runs/team-a/report-x">report-x</a> from step 3' in html
    assert f"registry.example/report@{DIGEST}" in html
    shown = tables.format_run(run, datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert "Fork of:" in shown and "report-x from step 3" in shown


def test_a_plain_run_shows_no_origin() -> None:
    run = handles.summarize_taskrun({**BODY, "spec": {"taskRef": {"name": "report"}},
                                     "status": {}})
    assert (run.replay_of, run.pinned_image) == (None, None)
    shown = tables.format_run(run, datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert "Fork of" not in shown and "Replay of" not in shown
