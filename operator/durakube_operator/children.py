"""Child runs: creating the TaskRuns that tasks asked for, and telling parents when they end.

Worker pods hold no Kubernetes credentials: `ctx.trigger` records a request in
Postgres and `SubmittingLoop` creates the TaskRun (named deterministically, so a
retry after a crash finds it already there), owned by the parent run and labelled
with it. When a child reaches a final phase, the reconciler's `acting` calls
`report_child_end`, which sends its result as an event on the key its parent
waits on.

A request is a row a worker wrote, so nothing in it decides a Kubernetes write
alone: the namespace, name and owner of a child come from the parent's TaskRun as
the API server has it (its uid must be the request's parent run id); the request
must have been written by the attempt it names while that attempt was live; and
its options must be ones a TaskRun may set (`ChildOptions`), or the trigger step's
trace context, which becomes the child's trace annotations. A request that fails
a check is refused (`refuse`), and the parent's wait on that child ends with the
reason, as a failed child's would.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pydantic

from durakube import resources, tracing
from durakube.store import children, pools, runs, waitpoints
from durakube_operator import faults, kubeapi, looping, pods

logger = logging.getLogger(__name__)

LABEL_PARENT = "durakube.io/parent-run"
LABEL_PARENT_UID = "durakube.io/parent-run-uid"
# A parent may wait long after its child ended (it may itself be backing off).
RESULT_RETENTION = timedelta(days=30)


class ChildOptions(pydantic.BaseModel):
    """What a task may set on a child's spec besides its task and payload; nothing else."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    queue: str | None = pydantic.Field(default=None, min_length=1, max_length=253)
    priority: int | None = None
    concurrency_key: str | None = pydantic.Field(default=None, alias="concurrencyKey",
                                                 min_length=1, max_length=253)
    # The trigger step's trace context (W3C), which the child's span takes as its parent;
    # annotations of the child, never part of its spec.
    traceparent: str | None = pydantic.Field(default=None, max_length=128)
    tracestate: str | None = pydantic.Field(default=None, max_length=tracing.TRACESTATE_LIMIT)

    @pydantic.field_validator("traceparent")
    @classmethod
    def _valid_traceparent(cls, value: str | None) -> str | None:
        if value is not None and tracing.parse(value) is None:
            raise ValueError("not a W3C traceparent")
        return value

    def spec_fields(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True,
                               exclude={"traceparent", "tracestate"})

    def annotations(self) -> dict[str, str]:
        traced = tracing.parse(self.traceparent, self.tracestate)
        return traced.annotations() if traced is not None else {}


class Refused(Exception):
    """A child request the operator will not act on; the message says why."""


def check_request(child: children.ChildRun, parent: dict[str, Any] | None) -> ChildOptions:
    """The request's options once every check passed; raises `Refused` otherwise."""
    if parent is None or parent["metadata"].get("uid") != child.parent_run_id:
        raise Refused(f"the parent TaskRun (uid {child.parent_run_id}) no longer exists")
    if not child.written_live:
        raise Refused("the request was not written by a live attempt of the parent run")
    try:
        return ChildOptions.model_validate(child.options)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'options'}: {problem['msg']}"
            for problem in error.errors())
        raise Refused(f"invalid child options ({problems}); a child may set only "
                      "queue, priority and concurrencyKey") from None


def child_manifest(child: children.ChildRun, parent: dict[str, Any],
                   options: ChildOptions) -> dict[str, Any]:
    """The child's TaskRun: in the parent's namespace, named and owned after the parent
    as the API server has it."""
    meta = parent["metadata"]
    spec: dict[str, Any] = {"taskRef": {"name": child.task}, "payload": child.payload,
                            **options.spec_fields()}
    return {
        "apiVersion": resources.API_VERSION, "kind": "TaskRun",
        "metadata": {
            "name": children.child_name(meta["name"], child.seq),
            "namespace": meta["namespace"],
            "labels": {LABEL_PARENT: pods.label_value(meta["name"]),
                       LABEL_PARENT_UID: meta["uid"]},
            **({"annotations": options.annotations()} if options.annotations() else {}),
            "ownerReferences": [{"apiVersion": resources.API_VERSION, "kind": "TaskRun",
                                 "name": meta["name"], "uid": meta["uid"],
                                 "blockOwnerDeletion": False}],
        },
        "spec": spec,
    }


async def submit_child_runs(db: pools.Database, api: kubeapi.KubeApi) -> int:
    """Creates (or refuses) the child runs asked for; returns how many were created."""
    submitted = 0
    for child in await children.unsubmitted_child_runs(db):
        parent = await api.get_taskrun(child.parent_namespace, child.parent_name)
        try:
            options = check_request(child, parent)
        except Refused as refused:
            await refuse(db, child, parent, str(refused))
            continue
        assert parent is not None
        manifest = child_manifest(child, parent, options)
        namespace = manifest["metadata"]["namespace"]
        if await api.create_taskrun(namespace, manifest):
            faults.reach("child-created", namespace)
        await children.mark_submitted(db, child.parent_run_id, child.seq)
        submitted += 1
    return submitted


async def refuse(db: pools.Database, child: children.ChildRun, parent: dict[str, Any] | None,
                 reason: str) -> None:
    """Closes a refused request and ends the parent's wait on that child with the reason."""
    logger.warning("child %d of run %s refused: %s", child.seq, child.parent_run_id, reason)
    await children.mark_rejected(db, child.parent_run_id, child.seq, reason)
    if parent is None or parent["metadata"].get("uid") != child.parent_run_id:
        return  # no parent left to tell
    meta = parent["metadata"]
    name = children.child_name(meta["name"], child.seq)
    result = {"phase": "Failed", "output": None,
              "error": {"type": "ChildRequestRefused", "message": reason}}
    await waitpoints.send_event(db, children.result_key(meta["namespace"], name), result,
                                event_id=f"child-refused:{child.parent_run_id}:{child.seq}",
                                retention=RESULT_RETENTION)


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
