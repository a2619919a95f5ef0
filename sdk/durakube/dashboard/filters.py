"""Filters of the runs list: what the page's form asks for, and which runs match it.

The runs page sends its filters as query parameters (`namespace`, `task`, `phase`,
`queue`, `key`, `tag`, `since`); `RunFilter.from_query` reads them, `matches`
decides for one run, and `count_phases` gives the per-phase counts shown above the
table (counted before the phase filter, so each phase's chip tells what clicking it
would show).

Pure functions over `handles.RunSummary` rows: no I/O here. Called by `reading`
and `serving`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from durakube import resources
from durakube.client import handles

# The time windows the page offers, newest first; "all" has no bound.
WINDOWS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "all": None}
DEFAULT_WINDOW = "24h"
# Every phase, in lifecycle order: the order of the counts above the table.
PHASES = [phase.value for phase in resources.Phase]
ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class RunFilter:
    """One query of the runs list; None (or "") means "any"."""

    namespace: str | None  # None: every namespace the user may list
    task: str | None = None
    phase: str | None = None
    queue: str | None = None
    key: str | None = None  # the concurrency key
    tag: str | None = None
    since: str = DEFAULT_WINDOW

    @classmethod
    def from_query(cls, query: Mapping[str, str], default_namespace: str | None) -> RunFilter:
        """The filter a query string asks for; unknown windows fall back to the default."""
        def value(name: str) -> str | None:
            text = (query.get(name) or "").strip()
            return text or None

        namespace = value("namespace") or default_namespace or ALL_NAMESPACES
        since = value("since") or DEFAULT_WINDOW
        return cls(namespace=None if namespace == ALL_NAMESPACES else namespace,
                   task=value("task"), phase=value("phase"), queue=value("queue"),
                   key=value("key"), tag=value("tag"),
                   since=since if since in WINDOWS else DEFAULT_WINDOW)

    @property
    def live_only(self) -> bool:
        """Whether only live TaskRuns can match: the history keeps no tags, no
        concurrency keys, and is read per namespace."""
        return self.namespace is None or self.tag is not None or self.key is not None

    def oldest(self, now: datetime) -> datetime | None:
        window = WINDOWS[self.since]
        return None if window is None else now - window

    def query(self, **changes: str | None) -> str:
        """This filter as a query string, with `changes` applied (None drops a field)."""
        fields = {**dataclasses.asdict(self), **changes}
        fields["namespace"] = fields["namespace"] or ALL_NAMESPACES
        return urlencode({name: text for name, text in fields.items() if text})


def matches(run: handles.RunSummary, wanted: RunFilter, now: datetime, *,
            concurrency_key: str | None = None, with_phase: bool = True) -> bool:
    """Whether `run` is one the filter asks for; `with_phase` False ignores the phase."""
    oldest = wanted.oldest(now)
    return ((wanted.namespace is None or run.namespace == wanted.namespace)
            and (wanted.task is None or run.task == wanted.task)
            and (not with_phase or wanted.phase is None
                 or (run.phase or "").lower() == wanted.phase.lower())
            and (wanted.queue is None or run.queue == wanted.queue)
            and (wanted.key is None or concurrency_key == wanted.key)
            and (wanted.tag is None or wanted.tag in run.tags)
            and (oldest is None or run.created_at is None or run.created_at >= oldest))


def count_phases(runs: Iterable[handles.RunSummary]) -> dict[str, int]:
    """Runs per phase, every phase present (0 when none), in lifecycle order."""
    counts = dict.fromkeys(PHASES, 0)
    for run in runs:
        phase = run.phase or resources.Phase.PENDING.value
        counts[phase] = counts.get(phase, 0) + 1
    return counts
