"""HTML of the pages: Jinja2 templates (autoescaped) and the filters they use.

The templates live in `templates/`, the stylesheet and the vendored htmx in
`static/`, both inside the package, so an installed dashboard needs nothing from
the network. Pure functions of the page models `reading` builds: no I/O but
reading the template files.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from durakube import resources
from durakube.client import tables

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Phase -> the colour family of its pill (CSS classes in static/dashboard.css).
PHASE_COLOURS = {
    "Pending": "grey", "Queued": "grey", "Running": "blue", "BackingOff": "amber",
    "Suspended": "violet", "Compensating": "amber", "Succeeded": "green", "Failed": "red",
    "Canceled": "slate", "TimedOut": "red", "Expired": "slate",
}


def build_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(age=format_age, timestamp=format_timestamp,
                               seconds=format_seconds, percent=format_percent)
    environment.globals.update(phase_colour=phase_colour, final_phases=resources.FINAL_PHASES,
                               now=lambda: datetime.now(UTC), static=static_url)
    return environment


def render(environment: jinja2.Environment, template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)


@functools.cache
def static_url(name: str) -> str:
    """The URL of a file of `static/`, with a digest of its content, so that a browser
    never keeps a stale copy after an upgrade."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]
    return f"/static/{name}?v={digest}"


def phase_colour(phase: str | None) -> str:
    return PHASE_COLOURS.get(phase or "", "grey")


def format_age(moment: datetime | None) -> str:
    """kubectl's age of `moment` ("42s", "5m", "3h"), "-" when unknown."""
    return tables.format_age(moment, datetime.now(UTC))


def format_timestamp(moment: datetime | str | None) -> str:
    """A UTC time to the second ("2026-11-26 05:43:57 UTC"), "-" when unknown."""
    if moment is None or moment == "":
        return tables.EMPTY
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_seconds(seconds: float | None) -> str:
    return tables.EMPTY if seconds is None else tables.format_milliseconds(seconds * 1000)


def format_percent(fraction: float | None) -> str:
    return tables.EMPTY if fraction is None else f"{fraction * 100:.0f}%"
