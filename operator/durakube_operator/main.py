"""`durakube-operator`: the operator's entry point (the operator image's command).

Reads the settings (failing fast, with one message naming every bad variable),
sets up logging (plain or JSON: DURAKUBE_LOG_FORMAT or `--log-format`),
then runs one replica (`operating`): the HTTP endpoints, the leader election, and
kopf with the handlers of `durakube_operator.handlers` while this replica leads,
cluster-wide or in the namespaces listed in DURAKUBE_NAMESPACES.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence

import uvloop

from durakube import logs
from durakube_operator import (
    faults,
    handlers,  # noqa: F401 (registers the kopf handlers on import)
    operating,
    settings,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="durakube-operator",
                                     description="The Durakube operator (settings: DURAKUBE_*).")
    parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default=None,
                        help="plain or json (default: $DURAKUBE_LOG_FORMAT, else plain)")
    args = parser.parse_args(argv)
    try:
        config = settings.from_environment()
    except settings.SettingsError as error:
        print(f"durakube-operator: {error}", file=sys.stderr)
        return 2
    if args.log_format is not None:
        config = config.model_copy(update={"log_format": args.log_format})
    # kopf's records (and its object loggers') go through the same handler and format.
    logs.configure(config.log_format, logging.INFO)
    # kopf logs every handler call at INFO; one line per pod event is noise at our scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    faults.arm(config.fault_points)
    tune_garbage_collection()
    # uvloop's event loop (libuv, in C): the same asyncio, about a tenth less CPU per run
    # (bench/pod_throughput.py), most of it the loop's own work between callbacks.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(operating.operate(config))


# Allocations between two collections of the youngest generation (CPython's default 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collection() -> None:
    """Fewer, cheaper cyclic collections. The operator allocates many short-lived dicts
    per watch event and pass and keeps thousands of long-lived ones (its caches): at
    CPython's defaults a collection runs every 700 allocations and the oldest
    generation's walk over every cached object comes often. What was built at start
    (modules, settings) is frozen out of every collection; reference counting frees the
    rest as before (the operator makes few cycles)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


if __name__ == "__main__":
    sys.exit(main())
