"""The image table: which local command stands in for an image's entrypoint.

There is no container runtime or registry on the test bed, so an image is only a
name. Images of the project run from the node's own virtual environment; an extra
JSON file (`--image-map`) may map more repositories; any other image runs the
pod's `command` as given on the host.

Called by `running` when it builds a container's command line; pure apart from
reading the map file once.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

_BIN = Path(sys.executable).parent

BUILTIN_ENTRYPOINTS: dict[str, list[str]] = {
    "durakube/worker": [str(_BIN / "durakube-worker")],
    "durakube/operator": [str(_BIN / "durakube-operator")],
}


class NoEntrypointError(Exception):
    """The image is unknown to the node and the pod gave no command."""


@dataclass(frozen=True)
class ImageTable:
    entrypoints: dict[str, list[str]]

    def resolve_command(self, image: str, command: list[str] | None,
                        args: list[str] | None) -> list[str]:
        """The argv before $(VAR) expansion, with Kubernetes' rules: `command`
        replaces the image entrypoint, `args` follow either."""
        if command:
            return [*command, *(args or [])]
        entrypoint = self.find_entrypoint(image)
        if entrypoint is None:
            raise NoEntrypointError(
                f"the process node has no entrypoint for image {image!r}: give the "
                f"container a command, or map the image with --image-map")
        return [*entrypoint, *(args or [])]

    def find_entrypoint(self, image: str) -> list[str] | None:
        repository = strip_tag(image)
        for suffix, entrypoint in self.entrypoints.items():
            if repository.endswith(suffix):
                return list(entrypoint)
        return None


def strip_tag(image: str) -> str:
    """The repository part of an image reference (no tag, no digest)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def load_image_table(image_map: Path | None) -> ImageTable:
    """The built-in entries, plus (taking precedence) those of `image_map`."""
    entries = dict(BUILTIN_ENTRYPOINTS)
    if image_map is not None:
        loaded = json.loads(image_map.read_text())
        entries = {**{strip_tag(k): list(v) for k, v in loaded.items()}, **{
            k: v for k, v in entries.items() if strip_tag(k) not in loaded}}
    return ImageTable(entries)
