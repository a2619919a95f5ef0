"""The chaos tests: scenarios of faults against the session's test bed and operator (the
fixtures of tests/conftest.py), checked by an independent watcher (`invariants`).

At the end of the session the table of scenarios is printed: runs, faults injected,
the invariants checked, the seed of the scenario's random choices (replay one with
DURAKUBE_CHAOS_SEED=<seed>), when it ended (seconds from the start of the scenarios,
which run at once) and the result.
"""

from __future__ import annotations

import pytest
from invariants import REPORT, SEED_VARIABLE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    write = terminalreporter.write_line
    write("")
    write("| scenario | runs | faults injected | invariants | seed | ended at | result |")
    write("|---|---|---|---|---|---|---|")
    for row in REPORT.values():
        result = row.result + (f" ({'; '.join(row.notes)})" if row.notes else "")
        ended = "" if row.ended is None else f"{row.ended:.0f}s"
        write(f"| {row.scenario} | {row.runs} | {row.faults} | {row.invariants} | {row.seed} "
              f"| {ended} | {result} |")
    write(f"(replay a scenario's random choices with {SEED_VARIABLE}=<seed>)")
