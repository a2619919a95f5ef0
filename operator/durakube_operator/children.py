"""Child runs: creating the TaskRuns that tasks asked for, and telling parents when they end.

Worker pods hold no Kubernetes credentials: `ctx.trigger` records a request in
Postgres and `SubmittingLoop` creates the TaskRun (named deterministically, so a
retry after a crash finds it already there), owned by the parent run and labelled
with it. When a child reaches a final phase, the reconciler's `acting` calls
`report_child_end`, which sends its result as an event on the key its parent
waits on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durakube import resources
from durakube.store import children, pools, runs, waitpoints
from durakube_operator import kubeapi, looping, pods

LABEL_PARENT = "durakube.io/parent-run"
LABEL_PARENT_UID = "durakube.io/parent-run-uid"
# A parent may wait long after its child ended (it may itself be backing off).
RESULT_RETENTION = timedelta(days=30)


def child_manifest(child: children.ChildRun) -> dict[str, Any]:
    spec: dict[str, Any] = {"taskRef": {"name": child.task}, "payload": child.payload,
                            **child.options}
    return {
        "apiVersion": resources.API_VERSION, "kind": "TaskRun",
        "metadata": {
            "name": child.name, "namespace": child.namespace,
            "labels": {LABEL_PARENT: pods.label_value(child.parent_name),
                       LABEL_PARENT_UID: child.parent_run_id},
            "ownerReferences": [{"apiVersion": resources.API_VERSION, "kind": "TaskRun",
                                 "name": child.parent_name, "uid": child.parent_run_id,
                                 "blockOwnerDeletion": False}],
        },
        "spec": spec,
    }


async def submit_child_runs(db: pools.Database, api: kubeapi.KubeApi) -> int:
    submitted = 0
    for child in await children.unsubmitted_child_runs(db):
        await api.create_taskrun(child.namespace, child_manifest(child))
        await children.mark_submitted(db, child.parent_run_id, child.seq)
        submitted += 1
    return submitted


async def report_child_end(db: pools.Database, body: dict[str, Any],
                           status: resources.TaskRunStatus) -> bool:
    """Sends a finished child's result to its parent; False for runs that are no child."""
    if LABEL_PARENT_UID not in (body["metadata"].get("labels") or {}):
        return False
    run = await runs.load_run(db, status.run_id or "")
    result = {
        "phase": str(status.phase),
        "output": run.output if run is not None else None,
        "error": status.last_error.model_dump(mode="json") if status.last_error else None,
    }
    meta = body["metadata"]
    await waitpoints.send_event(db, children.result_key(meta["namespace"], meta["name"]), result,
                                event_id=f"run-ended:{meta['uid']}", retention=RESULT_RETENTION)
    return True


class SubmittingLoop(looping.PokedLoop):
    """Creates the TaskRuns of child runs that workers asked for."""

    name = "submitting children"

    def __init__(self, db: pools.Database, api: kubeapi.KubeApi, interval: float = 0.5) -> None:
        super().__init__(interval)
        self.db, self.api = db, api

    async def run_pass(self) -> float | None:
        await submit_child_runs(self.db, self.api)
        return None
