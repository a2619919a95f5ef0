"""The images' Dockerfiles keep their promises.

Both images build FROM the `PYTHON_IMAGE` build argument (pinned by digest), install
their dependencies from a hashed lock file and the project's wheels without
resolving anything, carry the OCI labels stamped from build arguments, and run as
a numeric non-root user. The worker image ships the SDK alone and lets derived
images `pip install` as that user; the examples' image builds on it.

No image is built here (there is no container engine on the test machines): this
reads the Dockerfiles as the builder does, instruction by instruction.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OCI_LABELS = ("title", "description", "source", "licenses", "version", "revision", "created")
STAMPED = {"version": "VERSION", "revision": "REVISION", "created": "CREATED"}


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for name, argument in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, argument = line.partition(" ")
        keyword, argument = keyword.upper(), " ".join(argument.split())
        if keyword == "FROM":
            stages.append(Stage(argument))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: only ARG may come before FROM, not {line!r}"
            name, _, default = argument.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, argument))
    return Dockerfile(global_args, stages)


@dataclass(frozen=True)
class Image:
    dockerfile: Path
    lock: str
    entrypoint: str
    projects: tuple[str, ...]  # the folders it builds wheels from


WORKER = Image(ROOT / "worker-image" / "Dockerfile", "requirements/worker.lock", "durakube-worker",
               ("sdk",))
OPERATOR = Image(ROOT / "operator-image" / "Dockerfile", "requirements/operator.lock",
                 "durakube-operator", ("sdk", "operator"))
IMAGES = [WORKER, OPERATOR]
IDS = ["worker", "operator"]


def labels(stage: Stage) -> dict[str, str]:
    found: dict[str, str] = {}
    for argument in stage.all("LABEL"):
        for pair in shlex.split(argument):
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def env(stage: Stage) -> dict[str, str]:
    found: dict[str, str] = {}
    for argument in stage.all("ENV"):
        for pair in shlex.split(argument):
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def copied_sources(dockerfile: Dockerfile) -> list[str]:
    sources = []
    for stage in dockerfile.stages:
        for argument in stage.all("COPY"):
            words = [word for word in shlex.split(argument) if not word.startswith("--")]
            if "--from=" not in argument:
                sources.extend(words[:-1])
    return sources


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_every_stage_builds_from_the_python_image_argument(image: Image) -> None:
    dockerfile = parse(image.dockerfile)
    default = dockerfile.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), default
    assert len(dockerfile.stages) >= 2, "a build stage and a final one"
    for stage in dockerfile.stages:
        assert stage.base.split()[0] == "${PYTHON_IMAGE}", stage.base


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_the_final_stage_runs_as_a_numeric_non_root_user(image: Image) -> None:
    user = parse(image.dockerfile).final.last("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric"
    assert all(int(part) != 0 for part in user.split(":")), f"USER {user} is root"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_the_final_stage_carries_the_stamped_oci_labels(image: Image) -> None:
    final = parse(image.dockerfile).final
    found = labels(final)
    for name in OCI_LABELS:
        assert found.get(f"org.opencontainers.image.{name}"), name
    declared = {argument.partition("=")[0] for argument in final.all("ARG")}
    for name, arg in STAMPED.items():
        assert found[f"org.opencontainers.image.{name}"] == f"${{{arg}}}"
        assert arg in declared, f"ARG {arg} must be declared in the final stage to be in scope"
    assert found["org.opencontainers.image.licenses"] == "Apache-2.0"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_python_neither_buffers_nor_writes_bytecode(image: Image) -> None:
    variables = env(parse(image.dockerfile).final)
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"
    assert variables["PYTHONUNBUFFERED"] == "1"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_the_entrypoint_is_the_images_command(image: Image) -> None:
    assert parse(image.dockerfile).final.last("ENTRYPOINT") == f'["{image.entrypoint}"]'


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_dependencies_come_from_the_hashed_lock_only(image: Image) -> None:
    dockerfile = parse(image.dockerfile)
    runs = " && ".join(run for stage in dockerfile.stages for run in stage.all("RUN"))
    commands = [command.strip() for command in runs.split("&&")]
    installs = [command for command in commands if re.search(r"\bpip install\b", command)]
    assert installs
    locked = [command for command in installs if f"-r {image.lock}" in command]
    assert locked, f"{image.lock} is never installed"
    for command in locked:
        assert "--require-hashes" in command and "--no-deps" in command, command
    assert image.lock in copied_sources(dockerfile)
    # Everything else pip installs is a lock (hashed) or a wheel built here (--no-deps).
    for command in installs:
        assert "--no-deps" in command, command
        assert "--require-hashes" in command or "/wheels/" in command, command


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_the_image_holds_only_its_own_projects(image: Image) -> None:
    sources = copied_sources(parse(image.dockerfile))
    projects = {source.rstrip("/") for source in sources if not source.startswith("requirements/")}
    assert projects == set(image.projects)
    assert not [source for source in sources if "devcluster" in source]


def test_derived_images_install_as_the_worker_user() -> None:
    # `RUN pip install` in a user's image runs as USER 65532: it owns the environment.
    final = parse(WORKER.dockerfile).final
    user = final.last("USER")
    variables = env(final)
    venv = variables["VIRTUAL_ENV"]
    assert variables["PATH"].startswith(f"{venv}/bin:")
    owned = [argument for argument in final.all("COPY")
             if f"--chown={user}" in argument and argument.split()[-1] in (venv, str(Path(venv).parent))]
    assert owned, f"the environment {venv} is not handed to {user}"
    assert variables["PYTHONPATH"] == "/app"
    assert final.last("WORKDIR") == "/app"


def test_the_examples_image_builds_on_the_worker_image() -> None:
    dockerfile = parse(ROOT / "examples" / "Dockerfile")
    assert dockerfile.global_args["WORKER_IMAGE"].startswith("ghcr.io/durakube/worker:")
    assert [stage.base for stage in dockerfile.stages] == ["${WORKER_IMAGE}"]
    # Its modules sit at the root of /app, as the Tasks of examples/*.yaml name them.
    assert dockerfile.final.all("COPY") == ["examples/ /app/"]
    assert not dockerfile.final.all("USER"), "the worker image's user stays"
