"""The `durakube` command: trigger runs, watch them, and manage them from a shell.

    durakube trigger process-document --payload '{"documentId": "q3"}' --wait
    durakube list --phase Failed
    durakube steps process-document-x1y2z3
    durakube manifests my_tasks.billing --image ghcr.io/acme/tasks:1.4 | kubectl apply -f -
    durakube dashboard --port 8600        # needs `pip install 'durakube[dashboard]'`

`manifests` names each Task's module as it was imported here, from the working
directory: run it from the folder that the task image copies to /app, its import
root (worker-image/README.md).

Every command is a thin layer over `durakube.client.Client`: parse arguments, call
one client method, print a table (default) or `-o json|yaml`. Progress of `trigger
--wait` and `wait` goes to stderr, results to stdout, so output stays pipeable.
Runs triggered (or replayed) under a `TRACEPARENT` environment variable carry that
trace context (`durakube.tracing`). Exit codes: 0 done, 1 an error or a run that did
not succeed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from durakube import errors, tracing
from durakube.client import clients, failures, handles, kubeapi, manifests, tables

FINAL_OK = "Succeeded"
GLOBAL_DEFAULTS: dict[str, Any] = {"kubeconfig": None, "context": None, "namespace": None,
                                   "database_url": None, "output": "table"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Unset global flags (SUPPRESSed, so a flag before the command survives the subparser).
    for flag, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, flag):
            setattr(args, flag, default)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        # Runs it triggers join the trace of TRACEPARENT, as otel-cli and CI tools set it.
        with tracing.continuing(os.environ):
            code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (errors.DurakubeError, ValueError, OSError, ImportError,
            kubeapi.ConfigException) as error:  # ConfigException: no usable kubeconfig
        print(f"error: {error}", file=sys.stderr)
        return 1
    except kubeapi.ApiException as error:  # the API's own errors: short, not a traceback
        print(f"error: the Kubernetes API answered {error.status} {error.reason}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    # Global flags are accepted before and after the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS,
                        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS,
                        help="namespace (default: the context's)")
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="Postgres DSN for outputs, steps and history "
                             "(default: $DURAKUBE_DATABASE_URL)")
    common.add_argument("-o", "--output", choices=("table", "json", "yaml"),
                        default=argparse.SUPPRESS, help="output format (default: table)")

    parser = argparse.ArgumentParser(prog="durakube", parents=[common],
                                     description="Durable Python tasks on Kubernetes.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int],
                help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    trigger = command("trigger", run_trigger, "create a run of a task")
    trigger.add_argument("task", help="the task id (a Task object of that name must exist)")
    source = trigger.add_mutually_exclusive_group()
    source.add_argument("--payload", help="the payload as a JSON object")
    source.add_argument("--payload-file", type=Path, help="a file holding the payload's JSON "
                                                          "('-' for stdin)")
    trigger.add_argument("--queue", help="the queue (default: the task's)")
    trigger.add_argument("--key", dest="concurrency_key", help="concurrency key (e.g. a tenant)")
    trigger.add_argument("--priority", type=int, help="higher runs first (-1000..1000)")
    trigger.add_argument("--idempotency-key", help="the same key returns the same run")
    trigger.add_argument("--delay", help="start no sooner than this (e.g. 30s, 10m)")
    trigger.add_argument("--ttl", help="expire if still queued after this long")
    trigger.add_argument("--tag", action="append", default=[], dest="tags", help="a tag (repeat)")
    trigger.add_argument("--debounce", metavar="KEY",
                         help="of the runs of the task with this key, only the last of a "
                              "burst runs (with --debounce-delay)")
    trigger.add_argument("--debounce-delay", metavar="DURATION",
                         help="how long a debounced run waits for a newer one (e.g. 30s)")
    trigger.add_argument("--wait", action="store_true", help="wait and print the output")
    trigger.add_argument("--timeout", type=float, help="seconds to wait (with --wait)")

    get = command("get", run_get, "show one run")
    get.add_argument("run", help="the TaskRun name (or namespace/name, or a run id)")

    listing = command("list", run_list, "list runs, newest first (live and history)")
    listing.add_argument("--task")
    listing.add_argument("--phase")
    listing.add_argument("--queue")
    listing.add_argument("--tag", action="append", default=[], dest="tags")
    listing.add_argument("--limit", type=int, default=100)

    command("schedules", run_schedules, "list the TaskSchedules with their last and next times")

    for name, handler, text in (("logs", run_logs, "print the logs of every attempt, in order"),
                                ("steps", run_steps, "show the run's recorded steps"),
                                ("cancel", run_cancel, "cancel the run")):
        command(name, handler, text).add_argument("run")

    replay = command("replay", run_replay, "start a new run with the same task and payload")
    replay.description = (
        "Start a new run of RUN's task with its payload, queue, key, priority and tags. "
        "The new run keeps the code RUN was pinned to when its first attempt started (image "
        "and digest, modules, retry policy, timeout, pod template), even if the Task changed "
        "since; --latest runs the Task as it is now. --from-step N forks: the steps RUN "
        "recorded before step N (their results and ctx.state) are copied into the new run, "
        "which runs step N and everything after it again (see `durakube steps RUN`).")
    replay.add_argument("run", help="the TaskRun name (or namespace/name, or a run id)")
    replay.add_argument("--latest", action="store_true",
                        help="run the current Task, not the code RUN was pinned to")
    replay.add_argument("--from-step", type=int, metavar="N",
                        help="fork: reuse RUN's recorded steps before step N, run N onwards "
                             "(needs the database)")

    wait = command("wait", run_wait, "wait for a run to finish, showing its steps")
    wait.add_argument("run")
    wait.add_argument("--timeout", type=float, help="seconds (default: no limit)")

    event = command("send-event", run_send_event, "send an event to the namespace's runs waiting on KEY")
    event.add_argument("key")
    event.add_argument("--data", help="the event's data as JSON")

    token = command("complete-token", run_complete_token, "complete a waitpoint token")
    token.add_argument("token")
    token.add_argument("--data", help="the data handed to the waiting run, as JSON")

    dashboard = command("dashboard", run_dashboard,
                        "serve the run dashboard (web pages of runs, queues and tasks)")
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="address to listen on (default: 127.0.0.1, this machine only)")
    dashboard.add_argument("--port", type=int, default=8600, help="port (default: 8600)")
    dashboard.add_argument("-A", "--all-namespaces", action="store_true",
                           help="list the runs of every namespace you may list")
    dashboard.add_argument("--read-only", action="store_true", help="offer no actions")

    manifest = command("manifests", run_manifests,
                       "print Task manifests for the @task functions of a module")
    manifest.add_argument("module", help="the module to import, e.g. my_tasks.billing, named as "
                                         "the image imports it from /app")
    manifest.add_argument("--image", default=os.environ.get("DURAKUBE_IMAGE"),
                          help="the image holding the module (default: $DURAKUBE_IMAGE)")
    return parser


# Commands.


def run_trigger(args: argparse.Namespace) -> int:
    payload = _load_payload(args)
    if (args.debounce is None) != (args.debounce_delay is None):
        raise ValueError("give --debounce and --debounce-delay together")
    debounce = None if args.debounce is None else (args.debounce, args.debounce_delay)
    with _client(args) as client:
        handle = client.trigger(
            args.task, payload, queue=args.queue, concurrency_key=args.concurrency_key,
            priority=args.priority, idempotency_key=args.idempotency_key, delay=args.delay,
            ttl=args.ttl, tags=args.tags, debounce=debounce)
        if not args.wait:
            _emit(args, {"name": handle.name, "namespace": handle.namespace, "runId": handle.run_id,
                         "created": handle.created},
                  lambda: f"taskrun/{handle.name} {'created' if handle.created else 'exists'}")
            return 0
        print(f"taskrun/{handle.name} {'created' if handle.created else 'exists'}", file=sys.stderr)
        summary = client.wait(handle, timeout=args.timeout, on_progress=_progress_printer())
        return _finish(args, client, summary)


def run_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        summary = client.wait(args.run, timeout=args.timeout, on_progress=_progress_printer())
        return _finish(args, client, summary)


def run_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        summary = client.get(args.run)
    _emit(args, summary.to_json(), lambda: tables.format_run(summary, _now()))
    return 0


def run_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        runs = client.list(task=args.task, queue=args.queue, phase=args.phase, tags=args.tags,
                           limit=args.limit)
    _emit(args, [run.to_json() for run in runs], lambda: tables.format_runs(runs, _now()))
    return 0


def run_schedules(args: argparse.Namespace) -> int:
    with _client(args) as client:
        schedules = client.schedules()
    _emit(args, [schedule.to_json() for schedule in schedules],
          lambda: tables.format_schedules(schedules, _now()))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        logs = client.logs(args.run)
    if args.output != "table":
        _emit(args, [{"attempt": log.attempt, "pod": log.pod, "source": log.source,
                      "droppedBytes": log.dropped_bytes, "log": log.text} for log in logs],
              lambda: "")
        return 0
    if not logs:
        print("no logs (no attempt has started yet)", file=sys.stderr)
    for log in logs:
        kept = " (stored; the pod is gone)" if log.source == "stored" else ""
        print(f"==> attempt {log.attempt} (pod {log.pod}){kept} <==")
        print(log.text.rstrip("\n"))
    return 0


def run_steps(args: argparse.Namespace) -> int:
    with _client(args) as client:
        steps = client.steps(args.run)
    _emit(args, [step.to_json() for step in steps], lambda: tables.format_steps(steps))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        summary = client.cancel(args.run)
    _emit(args, summary.to_json(), lambda: f"taskrun/{summary.name} cancel requested")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    with _client(args) as client:
        handle = client.replay(args.run, latest=args.latest, from_step=args.from_step)
    what = f"fork of {args.run} from step {args.from_step}" if args.from_step is not None \
        else f"replay of {args.run}"
    _emit(args, {"name": handle.name, "namespace": handle.namespace, "runId": handle.run_id},
          lambda: f"taskrun/{handle.name} created ({what}"
                  f"{', on the current Task' if args.latest else ''})")
    return 0


def run_send_event(args: argparse.Namespace) -> int:
    data = _parse_json(args.data, "--data") if args.data is not None else None
    with _client(args) as client:
        delivery = client.send_event(args.key, data)
    _emit(args, {"eventId": delivery.event_id, "runIds": delivery.run_ids,
                 "buffered": delivery.buffered},
          lambda: (f"event {delivery.event_id} buffered (no run waits on {args.key!r} yet)"
                   if delivery.buffered else
                   f"event {delivery.event_id} delivered to {len(delivery.run_ids)} run(s)"))
    return 0


def run_complete_token(args: argparse.Namespace) -> int:
    data = _parse_json(args.data, "--data") if args.data is not None else None
    with _client(args) as client:
        run_id = client.complete_token(args.token, data)
    _emit(args, {"runId": run_id}, lambda: f"token completed; run {run_id} resumes")
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    try:
        from durakube import dashboard
    except ImportError as missing:
        raise ImportError(f"the dashboard needs the `dashboard` extra ({missing.name} is missing): "
                          "pip install 'durakube[dashboard]'") from None
    try:
        asyncio.run(dashboard.serve(
            address=args.address, port=args.port, kubeconfig=args.kubeconfig,
            context=args.context, namespace=args.namespace, all_namespaces=args.all_namespaces,
            database_url=args.database_url, read_only=args.read_only))
    except KeyboardInterrupt:
        pass
    return 0


def run_manifests(args: argparse.Namespace) -> int:
    if not args.image:
        raise ValueError("--image is required (or set DURAKUBE_IMAGE): the image holding the module")
    # Modules are found as `python -c "import MODULE"` would from here.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found = manifests.build_task_manifests(args.module, image=args.image)
    if not found:
        raise ValueError(f"module {args.module!r} registers no @task")
    if args.output == "json":
        print(json.dumps(found if len(found) > 1 else found[0], indent=2))
    else:
        print(yaml.safe_dump_all(found, sort_keys=False), end="")
    return 0


# Helpers.


def _client(args: argparse.Namespace) -> clients.Client:
    return clients.Client(kubeconfig=args.kubeconfig, context=args.context,
                          namespace=args.namespace, database_url=args.database_url)


def _finish(args: argparse.Namespace, client: clients.Client, summary: handles.RunSummary) -> int:
    """Prints the output of a succeeded run (exit 0), or why it did not succeed (exit 1)."""
    if summary.phase != FINAL_OK:
        error = summary.last_error or {}
        detail = f"{error.get('type')}: {error.get('message')}" if error else summary.message
        print(f"taskrun/{summary.name} {summary.phase} ({summary.reason}): {detail}", file=sys.stderr)
        if args.output != "table":
            _emit(args, summary.to_json(), lambda: "")
        return 1
    try:
        output = client.output(summary.handle)
    except failures.DatabaseNotConfigured:
        output = summary.output
    print(f"taskrun/{summary.name} Succeeded", file=sys.stderr)
    _emit(args, output, lambda: json.dumps(output, indent=2, default=str))
    return 0


def _progress_printer() -> clients.ProgressCallback:
    """A callback printing each phase change and each newly completed step (stderr)."""
    seen: dict[str, Any] = {"phase": None, "steps": 0, "attempt": 0}

    def show(summary: handles.RunSummary) -> None:
        if summary.attempt != seen["attempt"] and summary.attempt:
            seen["attempt"] = summary.attempt
            print(f"  attempt {summary.attempt}", file=sys.stderr)
        if summary.phase != seen["phase"]:
            seen["phase"] = summary.phase
            print(f"  {summary.phase}{f': {summary.message}' if summary.message else ''}",
                  file=sys.stderr)
        completed = summary.completed_steps or 0
        if completed > seen["steps"]:
            skipped = completed - seen["steps"] - 1
            more = f" (and {skipped} before it)" if skipped > 0 else ""
            print(f"  ✓ step {completed}: {summary.current_step}{more}", file=sys.stderr)
            seen["steps"] = completed
        sys.stderr.flush()

    return show


def _load_payload(args: argparse.Namespace) -> Any:
    if args.payload is not None:
        return _parse_json(args.payload, "--payload")
    if args.payload_file is not None:
        text = sys.stdin.read() if str(args.payload_file) == "-" else args.payload_file.read_text()
        return _parse_json(text, str(args.payload_file))
    return {}


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None


def _emit(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2, default=str))
    elif args.output == "yaml":
        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False), end="")
    else:
        text = human()
        if text:
            print(text)


def _now() -> datetime:
    return datetime.now(UTC)


if __name__ == "__main__":
    sys.exit(main())
