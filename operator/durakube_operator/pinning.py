"""Version pinning and forks: which Task a run's pods are built from, and where it started.

A run keeps the code it started with. When its first attempt starts, `deciding`
snapshots what the pods need from the Task (`resources.PinnedTask`: image, modules,
entrypoint, retry policy, timeouts, queue, pod template) into `status.pinned`; once the
first attempt's pod reports its image's digest (`status.containerStatuses[].imageID`),
the snapshot records it too, and later attempts run `image@digest` when the image is a
tag. Every later attempt and resume is built from the snapshot (`pinned_task`), even when
the Task changed or was deleted since.

A replay (`spec.replayOf`) keeps the code of the run it replays: its first attempt pins
that run's snapshot (`read_pin_source`), unless `latest` asks for the current Task. A
fork (`replayOf.fromStep`) also reuses the steps that run recorded before that step:
`fork_problem` checks them when the run is registered, and the registration copies them
(`acting`, `store.steps.copy_steps_txn`), from the same namespace only.

Called by `observing` (reads) and `deciding` (pure helpers); writes nothing.
"""

from __future__ import annotations

from typing import Any

import pydantic

from durakube import resources
from durakube.store import pools, runs, steps
from durakube_operator import caching, pods


def pinned_task(run: resources.TaskRun, current: resources.Task | None) -> resources.Task:
    """The Task the run's pods are built from: its snapshot once pinned, else `current`
    (which exists: a run without a snapshot and without its Task fails TaskNotFound)."""
    pinned = run.status.pinned
    if pinned is None:
        assert current is not None, "an unpinned run is observed with its Task"
        return current
    return pinned.task(run.spec.task_ref.name, current)


def snapshot(run: resources.TaskRun, task: resources.Task,
             source: resources.PinnedTask | None) -> resources.PinnedTask:
    """What the first attempt pins: the replayed run's snapshot when there is one to keep,
    else the Task as it is now. The queue stays the one the run waits in (it holds a
    place there already)."""
    if source is None:
        return resources.PinnedTask.of(task)
    return source.model_copy(update={"queue": task.spec.queue})


def keeps_source_pin(run: resources.TaskRun) -> bool:
    """Whether the run is a replay that keeps its replayed run's code."""
    origin = run.spec.replay_of
    return origin is not None and not origin.latest


async def read_pin_source(api: caching.CachedReads,
                          run: resources.TaskRun) -> resources.PinnedTask | None:
    """The snapshot of the run a replay keeps the code of (None: not such a replay, or that
    TaskRun is gone, was replaced by another of its name, or never pinned)."""
    origin = run.spec.replay_of
    if origin is None or origin.latest or run.metadata.namespace is None:
        return None
    body = await api.get_taskrun(run.metadata.namespace, origin.run)
    if body is None or body["metadata"].get("uid") != origin.run_id:
        return None
    pinned = (body.get("status") or {}).get("pinned")
    if not isinstance(pinned, dict):
        return None
    try:
        return resources.PinnedTask.model_validate(pinned)
    except pydantic.ValidationError:
        return None


async def fork_problem(db: pools.Database, run: resources.TaskRun) -> str | None:
    """Why the run's fork cannot be made (None: not a fork, or it can): the run it forks
    must be a run of the same namespace that recorded step `fromStep` (`steps.fork_refusal`)."""
    origin = run.spec.replay_of
    if origin is None or origin.from_step is None:
        return None
    source = await runs.load_run(db, origin.run_id)
    if source is None or source.namespace != run.metadata.namespace:
        return (f"spec.replayOf names run {origin.run_id}, which is not a run of namespace "
                f"{run.metadata.namespace!r}")
    refused = steps.fork_refusal(await steps.load_steps(db, origin.run_id), origin.from_step)
    if refused is not None:
        return f"cannot fork {origin.run!r} from step {origin.from_step}: {refused}"
    return None


def pod_image_digest(pod: dict[str, Any], image: str) -> str | None:
    """The digest the attempt pod's task container ran `image` as (None: not known yet,
    or the pod ran another image)."""
    # The spec's image, not the status's: a kubelet reports the name normalized.
    ran = next((container.get("image") for container in (pod.get("spec") or {}).get("containers")
                or [] if container.get("name") == pods.CONTAINER), None)
    if ran != image:
        return None
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == pods.CONTAINER:
            return resources.image_digest(container.get("imageID"))
    return None
