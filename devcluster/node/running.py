"""Running one pod: volumes, init containers in order, regular containers with
their restart policy and back-off, activeDeadlineSeconds, graceful deletion and
truthful status, as the kubelet's pod worker does.

`PodWorker` owns everything of one pod UID on this node: its container processes
(through `spawning`), its records (`containers`), and its status patches (built
by `statuses`, coalesced so a burst of changes costs one request). `syncing`
creates a worker for each pod bound to the node and feeds it updates; when the
pod gets a deletionTimestamp the worker stops its containers (SIGTERM, grace
period, SIGKILL), reports the final status and confirms the deletion.

It never watches the API itself and never touches another pod's processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.node import (
    apicalls,
    containers,
    environment,
    events,
    images,
    logs,
    probing,
    quantities,
    reasons,
    settings,
    spawning,
    statuses,
    times,
    volumes,
)

Json = dict[str, Any]
logger = logging.getLogger(__name__)

# How often a container that cannot be configured (missing Secret, ...) is retried.
CONFIG_RETRY_SECONDS = 5.0
# Minimum spacing between two status patches of one pod.
REPORT_SPACING = 0.2
TERMINATION_MESSAGE_LIMIT = 4096


@dataclass
class NodeServices:
    """What every pod worker of the node shares."""

    config: settings.Settings
    client: apicalls.Client
    images: images.ImageTable
    allocatable: dict[str, str]
    recorder: events.EventRecorder
    # (namespace, pod, container) of instances running now; read by `serving`.
    running: set[tuple[str, str, str]] = field(default_factory=set)

    async def fetch(self, kind: str, namespace: str, name: str) -> Json | None:
        """A Secret or ConfigMap, or None. The node authorizer learns of a pod's
        references a moment after the pod is bound, so 403s are retried briefly."""
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        path = f"/api/v1/namespaces/{apicalls.quote(namespace)}/{plural}/{apicalls.quote(name)}"
        for attempt in range(10):
            try:
                return await self.client.call("GET", path)
            except apicalls.ApiError as error:
                if error.status == 404:
                    return None
                if error.status != 403 or attempt == 9:
                    raise environment.ConfigError(f"cannot read {kind} {name}: {error}") from error
                await asyncio.sleep(0.5)
        return None


class PodWorker:
    def __init__(self, services: NodeServices, pod: Json, *,
                 on_done: Callable[[PodWorker], None]) -> None:
        self.services = services
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.folder = logs.pod_dir(services.config.pods_dir, self.namespace, self.name, self.uid)
        self._on_done = on_done
        now = times.now()
        status = pod.get("status") or {}
        start = status.get("startTime")
        self.facts = statuses.PodFacts(times.parse_time(start) if start else now)
        spec = pod["spec"]
        self.init_records = self._records(spec.get("initContainers", []),
                                          status.get("initContainerStatuses", []), now)
        self.main_records = self._records(spec.get("containers", []),
                                          status.get("containerStatuses", []), now)
        if spec.get("initContainers"):
            for record in self.main_records:
                if record.instances_started == 0:
                    record.state = containers.Waiting(reasons.POD_INITIALIZING)
        self.instances: dict[str, spawning.Instance] = {}
        self.stopping = asyncio.Event()
        self.deletion_requested = asyncio.Event()
        self.gone = False
        self.shutting_down = False
        self._stop_grace: float = 0.0
        self._stop_tasks: set[asyncio.Task[None]] = set()
        self._volume_paths: dict[str, str] = {}
        self._report_wanted = asyncio.Event()
        self._report_lock = asyncio.Lock()
        self._last_reported: Json | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff: dict[str, float] = {}
        if status.get("phase") in ("Succeeded", "Failed"):
            # Finished before this agent saw it (or under a previous agent).
            self.facts.terminal = True
            self.facts.reason = status.get("reason")
            self.facts.message = status.get("message")

    @staticmethod
    def _records(specs: list[Json], observed: list[Json],
                 now: Any) -> list[containers.ContainerRecord]:
        by_name = {s["name"]: s for s in observed}
        records = []
        for spec in specs:
            seen = by_name.get(spec["name"])
            record = containers.from_api(seen, now) if seen else containers.ContainerRecord(
                spec["name"], spec.get("image", ""))
            record.image = spec.get("image", "")
            records.append(record)
        return records

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: Json) -> None:
        """A newer version of the pod object from the watch."""
        self.pod = pod
        metadata = pod["metadata"]
        if metadata.get("deletionTimestamp") and not self.deletion_requested.is_set():
            grace = metadata.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            self.deletion_requested.set()
            self.request_stop(float(grace))

    def forget(self) -> None:
        """The pod object is gone from the API: stop without reporting."""
        self.gone = True
        self.deletion_requested.set()
        self.request_stop(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    async def shut_down(self, grace: float) -> None:
        """The agent stops: kill the containers, report nothing, keep the pod."""
        self.shutting_down = True
        self.stopping.set()
        await self._kill_all(grace)
        if self._task is not None:
            # Give the container loops a moment to reap what was just killed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 1.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def request_stop(self, grace: float) -> None:
        self._stop_grace = grace
        self.stopping.set()
        self.facts.terminal = True
        if self.instances:
            task = asyncio.create_task(self._kill_all(grace))
            self._stop_tasks.add(task)
            task.add_done_callback(self._stop_tasks.discard)
        self.request_report()

    async def _kill_all(self, grace: float) -> None:
        instances = list(self.instances.items())
        for name, _ in instances:
            self.services.recorder.record_event(self.pod, reasons.KILLING,
                                                f"Stopping container {name}", container=name)
        await asyncio.gather(*(spawning.stop_instance(i, grace) for _, i in instances))

    async def _run(self) -> None:
        reporter = asyncio.create_task(self._report_continuously())
        deadline = asyncio.create_task(self._enforce_deadline())
        try:
            if not self.facts.terminal:
                self.request_report()
                if await self._prepare_volumes() and await self._run_init_containers():
                    await self._run_main_containers()
                self.facts.terminal = True
                self.request_report()
            await self.deletion_requested.wait()
            await asyncio.gather(*self._stop_tasks)
            if not self.gone:
                await self._report_now()
                await self._confirm_deletion()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("pod worker %s/%s failed", self.namespace, self.name)
        finally:
            deadline.cancel()
            reporter.cancel()
            shutil.rmtree(volumes.volumes_dir(self.folder), ignore_errors=True)
            if not self.shutting_down:
                self._on_done(self)

    async def _confirm_deletion(self) -> None:
        path = (f"/api/v1/namespaces/{apicalls.quote(self.namespace)}/pods/"
                f"{apicalls.quote(self.name)}")
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        for _ in range(5):
            try:
                await self.services.client.call("DELETE", path, body)
                return
            except apicalls.ApiError as error:
                if error.status in (404, 409):
                    return
                logger.warning("confirming deletion of %s/%s failed: %s", self.namespace,
                               self.name, error)
                await asyncio.sleep(1)

    async def _enforce_deadline(self) -> None:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        if seconds is None:
            return
        remaining = (self.facts.start_time.timestamp() + int(seconds)) - times.now().timestamp()
        await asyncio.sleep(max(0.0, remaining))
        if self.stopping.is_set():
            return
        self.facts.reason = reasons.DEADLINE_EXCEEDED
        self.facts.message = reasons.DEADLINE_EXCEEDED_MESSAGE
        self.services.recorder.record_event(self.pod, reasons.DEADLINE_EXCEEDED,
                                            reasons.DEADLINE_EXCEEDED_MESSAGE, warning=True)
        self.request_stop(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    # ---- volumes and containers --------------------------------------------------------

    async def _prepare_volumes(self) -> bool:
        while not self.stopping.is_set():
            try:
                self._volume_paths = await volumes.prepare_volumes(
                    self.pod, self.folder, self.services.fetch, self._request_token,
                    self.services.allocatable)
                self.facts.volumes_ready = True
                self.request_report()
                return True
            except (volumes.VolumeError, environment.ConfigError, apicalls.ApiError) as error:
                message = f"MountVolume.SetUp failed: {error}"
                self.services.recorder.record_event(self.pod, reasons.FAILED_MOUNT, message,
                                                    warning=True)
                for record in [*self.init_records, *self.main_records]:
                    record.state = containers.Waiting(reasons.CONTAINER_CREATING, message)
                self.request_report()
                await self._sleep_unless_stopping(CONFIG_RETRY_SECONDS)
        return False

    async def _request_token(self, service_account: str, audience: str | None,
                             expiration: int) -> str:
        spec: Json = {"expirationSeconds": expiration, "boundObjectRef": {
            "kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid}}
        if audience:
            spec["audiences"] = [audience]
        path = (f"/api/v1/namespaces/{apicalls.quote(self.namespace)}/serviceaccounts/"
                f"{apicalls.quote(service_account)}/token")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        for attempt in range(10):
            try:
                answer = await self.services.client.call("POST", path, body)
                return str(answer["status"]["token"])
            except apicalls.ApiError as error:
                if error.status != 403 or attempt == 9:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def _run_init_containers(self) -> bool:
        specs = self.pod["spec"].get("initContainers", [])
        for spec, record in zip(specs, self.init_records, strict=True):
            if record.succeeded:
                continue
            await self._run_container(spec, record, init=True)
            if not record.succeeded:
                return False
        return True

    async def _run_main_containers(self) -> None:
        specs = self.pod["spec"].get("containers", [])
        await asyncio.gather(*(self._run_container(spec, record, init=False)
                               for spec, record in zip(specs, self.main_records, strict=True)))

    def _should_restart(self, exit_code: int, *, init: bool) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if init:
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    async def _run_container(self, spec: Json, record: containers.ContainerRecord, *,
                             init: bool) -> None:
        """Starts the container, waits for it, restarts it while the policy says so."""
        name = spec["name"]
        while not self.stopping.is_set():
            state = record.state
            if isinstance(state, containers.Terminated):
                if not self._should_restart(state.exit_code, init=init):
                    return
                if not await self._back_off(spec, record, state):
                    return
                record.state = containers.Waiting(reasons.CONTAINER_CREATING)
            try:
                launch = await self._build_launch_spec(spec, init=init)
            except (environment.ConfigError, images.NoEntrypointError) as error:
                reason = reasons.ERR_IMAGE_PULL if isinstance(error, images.NoEntrypointError) \
                    else reasons.CREATE_CONTAINER_CONFIG_ERROR
                if not isinstance(record.state, containers.Waiting) or \
                        record.state.reason != reason:
                    self.services.recorder.record_event(self.pod, reasons.FAILED,
                                                        f"Error: {error}", warning=True,
                                                        container=name, init=init)
                record.state = containers.Waiting(reason, str(error))
                self.request_report()
                await self._sleep_unless_stopping(CONFIG_RETRY_SECONDS)
                continue
            if self.stopping.is_set():
                return
            await self._start_and_wait(spec, record, launch, init=init)

    async def _back_off(self, spec: Json, record: containers.ContainerRecord,
                        state: containers.Terminated) -> bool:
        """Waits out the restart back-off (the first restart is immediate, as in the
        kubelet); False when the pod stopped meanwhile."""
        name = spec["name"]
        delay = self._backoff.get(name, 0.0)
        config = self.services.config
        self._backoff[name] = min(config.backoff_max, max(config.backoff_initial, delay * 2))
        record.last_state = state
        if delay <= 0:
            return True
        record.state = containers.Waiting(
            reasons.CRASH_LOOP_BACK_OFF,
            f"back-off {delay:g}s restarting failed container={name} "
            f"pod={self.name}_{self.namespace}({self.uid})")
        self.services.recorder.record_event(self.pod, reasons.BACK_OFF,
                                            f"Back-off restarting failed container {name} in "
                                            f"pod {self.name}_{self.namespace}({self.uid})",
                                            warning=True, container=name)
        self.request_report()
        await self._sleep_unless_stopping(delay)
        return not self.stopping.is_set()

    async def _start_and_wait(self, spec: Json, record: containers.ContainerRecord,
                              launch: spawning.LaunchSpec, *, init: bool) -> None:
        name = spec["name"]
        restart = record.instances_started
        folder = logs.container_dir(self.folder, name)
        container_id = f"process://{uuid.uuid4().hex}"
        self.services.recorder.record_event(
            self.pod, reasons.PULLED,
            f'Container image "{spec.get("image", "")}" already present on machine',
            container=name, init=init)
        message_path = folder / f"{restart}.termination-log"
        folder.mkdir(parents=True, exist_ok=True)
        message_path.write_bytes(b"")
        message_path.chmod(0o666)
        launch.mounts.append(spawning.Mount(
            str(message_path), spec.get("terminationMessagePath", "/dev/termination-log")))
        instance = await spawning.spawn(
            launch, folder=folder, restart=restart, cgroup_parent=self.services.config.cgroup_parent,
            cgroup_name=f"{self.uid}_{name}_{restart}")
        self.instances[name] = instance
        key = (self.namespace, self.name, name)
        self.services.running.add(key)
        record.restart_count = restart
        record.instances_started = restart + 1
        record.container_id = container_id
        record.state = containers.Running(instance.started_at)

        def set_ready(ready: bool) -> None:
            if record.ready != ready:
                record.ready = ready
                self.request_report()

        prober = asyncio.create_task(probing.watch_readiness(spec, instance.pid, launch.env,
                                                             set_ready))
        self.services.recorder.record_event(self.pod, reasons.CREATED,
                                            f"Created container: {name}", container=name,
                                            init=init)
        self.services.recorder.record_event(self.pod, reasons.STARTED,
                                            f"Started container {name}", container=name,
                                            init=init)
        self.request_report()
        try:
            exit_info = await spawning.wait_for_exit(instance)
        finally:
            prober.cancel()
            self.services.running.discard(key)
            self.instances.pop(name, None)
        record.ready = False
        record.state = self._terminated_state(spec, instance, exit_info, container_id,
                                              message_path)
        self.request_report()

    def _terminated_state(self, spec: Json, instance: spawning.Instance, exit_info: spawning.Exit,
                          container_id: str, message_path: Path) -> containers.Terminated:
        if exit_info.start_error is not None:
            return containers.Terminated(exit_info.exit_code, reasons.START_ERROR, None,
                                         exit_info.finished_at, container_id,
                                         exit_info.start_error)
        if exit_info.oom_killed:
            reason = reasons.OOM_KILLED
        elif exit_info.exit_code == 0:
            reason = reasons.COMPLETED
        else:
            reason = reasons.ERROR
        try:
            message = message_path.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(
                errors="replace")
        except OSError:
            message = ""
        if not message and exit_info.exit_code != 0 and \
                spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = logs.read_fallback_message(instance.log_path)
        return containers.Terminated(exit_info.exit_code, reason, instance.started_at,
                                     exit_info.finished_at, container_id, message)

    async def _build_launch_spec(self, spec: Json, *, init: bool) -> spawning.LaunchSpec:
        del init
        services = self.services
        argv = services.images.resolve_command(spec.get("image", ""), spec.get("command"),
                                               spec.get("args"))
        env = await environment.resolve_env(
            self.pod, spec, services.fetch, apiserver_port=services.config.apiserver_port,
            allocatable=services.allocatable)
        uid, gid, groups, no_new_privs = self._resolve_identity(spec)
        home = "/root"
        with contextlib.suppress(KeyError):
            home = pwd.getpwuid(uid if uid is not None else 0).pw_dir
        base = {"PATH": os.environ.get("PATH", os.defpath), "HOSTNAME": self.name,
                "HOME": home}
        if os.environ.get("LANG"):
            base["LANG"] = os.environ["LANG"]
        full_env = {**base, **env}
        try:
            mounts = volumes.mounts_for(spec, self._volume_paths)
        except volumes.VolumeError as error:
            raise environment.ConfigError(str(error)) from error
        limit = (spec.get("resources") or {}).get("limits", {}).get("memory")
        return spawning.LaunchSpec(
            argv=environment.expand_command(argv, full_env), env=full_env,
            cwd=spec.get("workingDir") or None, uid=uid, gid=gid, groups=groups, mounts=mounts,
            no_new_privs=no_new_privs,
            memory_limit=int(quantities.parse_quantity(limit)) if limit else None)

    def _resolve_identity(self, spec: Json) -> tuple[int | None, int | None, list[int] | None,
                                                     bool]:
        """runAsUser/runAsGroup/supplementalGroups/fsGroup, runAsNonRoot and
        allowPrivilegeEscalation, container settings over pod settings."""
        pod_context = self.pod["spec"].get("securityContext") or {}
        context = spec.get("securityContext") or {}

        def pick(key: str) -> Any:
            return context.get(key, pod_context.get(key))

        uid, gid = pick("runAsUser"), pick("runAsGroup")
        if pick("runAsNonRoot") and (uid is None or int(uid) == 0):
            detail = "image will run as root" if uid is None else "runAsUser is 0"
            raise environment.ConfigError(
                f"container has runAsNonRoot and {detail} (pod: "
                f'"{self.name}_{self.namespace}({self.uid})", container: {spec["name"]})')
        groups: list[int] | None = None
        if uid is not None or gid is not None or pod_context.get("supplementalGroups") or \
                pod_context.get("fsGroup") is not None:
            groups = [int(g) for g in pod_context.get("supplementalGroups", [])]
            if pod_context.get("fsGroup") is not None:
                groups.append(int(pod_context["fsGroup"]))
        if uid is not None and gid is None:
            gid = 0
        no_new_privs = context.get("allowPrivilegeEscalation") is False
        return (int(uid) if uid is not None else None, int(gid) if gid is not None else None,
                groups, no_new_privs)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # ---- status ------------------------------------------------------------------------

    def request_report(self) -> None:
        self._report_wanted.set()

    async def _report_continuously(self) -> None:
        while True:
            await self._report_wanted.wait()
            self._report_wanted.clear()
            try:
                await self._report_now()
            except apicalls.ApiError as error:
                logger.warning("status of %s/%s not reported: %s", self.namespace, self.name,
                               error)
                self._report_wanted.set()
                await asyncio.sleep(1)
            await asyncio.sleep(REPORT_SPACING)

    async def _report_now(self) -> None:
        if self.gone or self.shutting_down:
            return
        async with self._report_lock:
            status = statuses.build_pod_status(self.pod, self.init_records, self.main_records,
                                               self.facts, times.now())
            digest = statuses.status_digest(status)
            if digest == self._last_reported:
                return
            path = (f"/api/v1/namespaces/{apicalls.quote(self.namespace)}/pods/"
                    f"{apicalls.quote(self.name)}/status")
            try:
                answer = await self.services.client.call(
                    "PATCH", path, {"metadata": {"uid": self.uid}, "status": status},
                    content_type=apicalls.STRATEGIC_MERGE_PATCH)
            except apicalls.ApiError as error:
                if error.status in (404, 409):
                    return  # the pod is gone or was replaced: nothing to report to
                raise
            self._last_reported = digest
            if answer.get("metadata", {}).get("uid") == self.uid:
                self.pod = {**self.pod, "status": answer.get("status", {})}
