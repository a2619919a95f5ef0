"""What each distribution ships and needs.

`durakube` (sdk/) is what a task image installs: the SDK alone, none of the
operator's dependencies. `durakube-operator` (operator/) is the operator, pinned to
the SDK of its own version. The test bed (devcluster/, the root project) is in
neither. Every third-party module a distribution imports is one of its declared
dependencies, and every dependency is pinned, with hashes, in its image's lock file.

The wheels are built from copies of the projects, as the images build them
(`pip wheel --no-deps --no-build-isolation`), so no stale build output of the
working tree can leak in.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ROOT / "requirements"
# The environment the images resolve for, as `make lock` does.
IMAGE_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.0",
                     "sys_platform": "linux", "platform_system": "Linux",
                     "platform_machine": "x86_64", "os_name": "posix",
                     "implementation_name": "cpython", "platform_python_implementation": "CPython"}
OPERATOR_ONLY = {"kopf", "prometheus-client", "aiohttp"}


@dataclass(frozen=True)
class Project:
    distribution: str
    folder: Path
    package: str  # the one top-level package the wheel holds
    lock: Path  # the lock file of the image that installs it
    scripts: frozenset[str]

    @property
    def pyproject(self) -> dict[str, Any]:
        return tomllib.loads((self.folder / "pyproject.toml").read_text())


SDK = Project("durakube", ROOT / "sdk", "durakube", LOCKS / "worker.lock",
              frozenset({"durakube", "durakube-worker"}))
OPERATOR = Project("durakube-operator", ROOT / "operator", "durakube_operator",
                   LOCKS / "operator.lock", frozenset({"durakube-operator"}))
PUBLISHED = [SDK, OPERATOR]
IDS = [project.distribution for project in PUBLISHED]


def requirements(project: Project) -> list[Requirement]:
    return [Requirement(text) for text in project.pyproject["project"]["dependencies"]]


def declared_names(project: Project) -> set[str]:
    return {canonicalize_name(requirement.name) for requirement in requirements(project)}


def extra_names(project: Project, extra: str) -> set[str]:
    texts = project.pyproject["project"].get("optional-dependencies", {}).get(extra, [])
    return {canonicalize_name(Requirement(text).name) for text in texts}


# The SDK's optional `durakube dashboard` (durakube/dashboard/), and what only it may import.
DASHBOARD_EXTRA = "dashboard"
DASHBOARD_PACKAGE = Path("durakube") / "dashboard"
# The SDK's pytest plugin (pytest loads it, so pytest is there), and its extra.
TESTING_EXTRA = "testing"
TESTING_PLUGIN = Path("durakube") / "testing" / "pytest_plugin.py"
# The SDK's optional traces (`durakube[tracing]`): only this module may import them, and
# only inside its functions, so that the SDK imports and runs without them.
TRACING_EXTRA = "tracing"
TRACING_MODULE = Path("durakube") / "tracing.py"


@dataclass(frozen=True)
class Wheel:
    names: list[str]
    metadata: dict[str, list[str]]
    scripts: set[str]

    def top_level(self) -> set[str]:
        return {name.split("/", 1)[0] for name in self.names}

    def requires(self) -> list[Requirement]:
        return [Requirement(text) for text in self.metadata.get("Requires-Dist", [])]


def read_wheel(path: Path) -> Wheel:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        info = next(name.split("/", 1)[0] for name in names if name.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(f"{info}/METADATA").decode())
        metadata: dict[str, list[str]] = {}
        for key, value in headers.items():
            metadata.setdefault(key, []).append(value)
        entry_points = configparser.ConfigParser()
        if f"{info}/entry_points.txt" in names:
            entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
    scripts = (set(entry_points["console_scripts"]) if entry_points.has_section("console_scripts")
               else set())
    return Wheel(names, metadata, scripts)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Wheel]:
    """The wheel of each published project, built from a clean copy of its folder."""
    work = tmp_path_factory.mktemp("wheels")
    sources = []
    for project in PUBLISHED:
        source = work / "src" / project.folder.name
        shutil.copytree(project.folder, source,
                        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
        sources.append(str(source))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(work / "out"), *sources],
                   check=True, capture_output=True, text=True)
    built: dict[str, Wheel] = {}
    for path in sorted((work / "out").glob("*.whl")):
        wheel = read_wheel(path)
        built[canonicalize_name(wheel.metadata["Name"][0])] = wheel
    assert set(built) == {project.distribution for project in PUBLISHED}
    return built


# The wheels.


@pytest.mark.parametrize("project", PUBLISHED, ids=IDS)
def test_each_wheel_holds_its_own_package_only(wheels: dict[str, Wheel], project: Project) -> None:
    version = project.pyproject["project"]["version"]
    dist_info = f"{project.package}-{version}.dist-info"
    assert wheels[project.distribution].top_level() == {project.package, dist_info}


@pytest.mark.parametrize("project", PUBLISHED, ids=IDS)
def test_no_wheel_ships_the_test_bed(wheels: dict[str, Wheel], project: Project) -> None:
    assert not [name for name in wheels[project.distribution].names if "devcluster" in name]


@pytest.mark.parametrize("project", PUBLISHED, ids=IDS)
def test_each_wheel_installs_its_own_commands(wheels: dict[str, Wheel], project: Project) -> None:
    assert wheels[project.distribution].scripts == project.scripts


def test_the_sdk_wheel_is_typed(wheels: dict[str, Wheel]) -> None:
    assert "durakube/py.typed" in wheels["durakube"].names


def test_the_sdk_wheel_carries_the_dashboards_pages(wheels: dict[str, Wheel]) -> None:
    # Served from the package itself: nothing is fetched from the network at run time.
    names = set(wheels["durakube"].names)
    for name in ("templates/run.html", "templates/runs.html", "static/htmx.min.js",
                 "static/htmx.LICENSE", "static/dashboard.css"):
        assert f"durakube/dashboard/{name}" in names, name


def test_the_sdk_wheel_does_not_require_the_operators_dependencies(wheels: dict[str, Wheel]) -> None:
    requires = wheels["durakube"].requires()
    required = {canonicalize_name(requirement.name) for requirement in requires
                if requirement.marker is None}
    assert required == declared_names(SDK)
    assert not required & OPERATOR_ONLY
    assert "durakube-operator" not in required
    # The dashboard's server is an extra: a task image never installs it.
    extra = {canonicalize_name(requirement.name) for requirement in requires
             if requirement.marker is not None
             and requirement.marker.evaluate({"extra": DASHBOARD_EXTRA})}
    assert extra == extra_names(SDK, DASHBOARD_EXTRA)


def test_the_operator_wheel_pins_the_sdk_of_its_own_version(wheels: dict[str, Wheel]) -> None:
    version = OPERATOR.pyproject["project"]["version"]
    assert version == SDK.pyproject["project"]["version"]
    requires = {canonicalize_name(requirement.name): requirement
                for requirement in wheels["durakube-operator"].requires()}
    assert str(requires["durakube"].specifier) == f"=={version}"
    assert OPERATOR_ONLY <= set(requires)


def test_the_test_bed_project_cannot_be_uploaded() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Private :: Do Not Upload" in root["classifiers"]
    assert canonicalize_name(root["name"]) not in {project.distribution for project in PUBLISHED}


def test_the_dev_environment_has_every_command() -> None:
    # make setup installs the three projects editable; the test bed launches these by path.
    commands = {point.name: point for point in importlib.metadata.entry_points(group="console_scripts")}
    for name in ("durakube", "durakube-worker", "durakube-operator", "durakube-devcluster",
                 "durakube-node"):
        assert (Path(sys.executable).parent / name).exists(), name
        assert callable(commands[name].load()), name


# The imports.


def third_party_imports(package: Path, *, leaving_out: Path | tuple[Path, ...] = ()) -> dict[str, str]:
    """Top-level module -> a file importing it, for every absolute import of `package` (a
    folder or one module; in functions too) that is not of the standard library;
    `leaving_out` subfolders or modules."""
    found: dict[str, str] = {}
    left_out = leaving_out if isinstance(leaving_out, tuple) else (leaving_out,)
    for path in sorted(package.rglob("*.py") if package.is_dir() else [package]):
        if any(path.is_relative_to(folder) for folder in left_out):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".", 1)[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("project", PUBLISHED, ids=IDS)
def test_every_import_is_a_declared_dependency(project: Project) -> None:
    dashboard, plugin = SDK.folder / DASHBOARD_PACKAGE, SDK.folder / TESTING_PLUGIN
    tracing = SDK.folder / TRACING_MODULE
    scans = [(third_party_imports(project.folder / project.package,
                                  leaving_out=(dashboard, plugin, tracing)),
              declared_names(project))]
    if project is SDK:
        # The dashboard, the pytest plugin and the traces may import their extra's packages too.
        scans.append((third_party_imports(dashboard),
                      declared_names(SDK) | extra_names(SDK, DASHBOARD_EXTRA)))
        scans.append((third_party_imports(plugin),
                      declared_names(SDK) | extra_names(SDK, TESTING_EXTRA)))
        scans.append((third_party_imports(tracing),
                      declared_names(SDK) | extra_names(SDK, TRACING_EXTRA)))
    assert scans[0][0], "the scan found no import at all"
    undeclared = [problem for imports, declared in scans
                  for problem in _undeclared(project, imports, declared)]
    assert not undeclared, f"{project.distribution} does not declare: {', '.join(undeclared)}"


def _undeclared(project: Project, imports: dict[str, str], declared: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(imports.items()):
        if module == project.package:
            continue
        assert module in providers, f"{where} imports {module}, which no installed distribution provides"
        if not {canonicalize_name(name) for name in providers[module]} & declared:
            undeclared.append(f"{module} (imported by {where}, from {sorted(providers[module])})")
    return undeclared


def test_the_sdk_imports_opentelemetry_only_inside_functions_of_its_tracing_module() -> None:
    # Tracing off (no endpoint) or the extra missing: importing the SDK imports none of it.
    assert "opentelemetry" not in third_party_imports(SDK.folder / SDK.package,
                                                      leaving_out=SDK.folder / TRACING_MODULE)
    tree = ast.parse((SDK.folder / TRACING_MODULE).read_text())
    at_module_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
                       and "opentelemetry" in ast.unparse(node)]
    assert not at_module_level


def test_the_worker_image_carries_the_tracing_extra() -> None:
    pins = read_lock(SDK.lock)
    for text in SDK.pyproject["project"]["optional-dependencies"][TRACING_EXTRA]:
        requirement = Requirement(text)
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), requirement


def test_the_sdk_never_imports_the_operators_packages() -> None:
    operators = {"kopf", "prometheus_client", "durakube_operator", "devcluster"}
    assert not set(third_party_imports(SDK.folder / SDK.package)) & operators
    # aiohttp serves the dashboard, an extra; the rest of the SDK does without it.
    assert "aiohttp" not in third_party_imports(SDK.folder / SDK.package,
                                                leaving_out=(SDK.folder / DASHBOARD_PACKAGE,))


# The lock files.


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Package -> (pinned version, hashes) of a `--generate-hashes` lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if pin:
            current = canonicalize_name(pin[1])
            pins[current] = (pin[2], [])
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", stripped)
        if hashes:
            assert current is not None, f"{path.name}: a hash before any package"
            pins[current][1].extend(hashes)
        elif not pin:
            raise AssertionError(f"{path.name}: not a pin or a hash: {line!r}")
    return pins


def lock_closure(project: Project) -> list[Requirement]:
    """The requirements the project's lock must satisfy: its own, and the SDK's for the
    operator (the image installs the SDK's wheel with --no-deps too)."""
    own = [requirement for requirement in requirements(project)
           if canonicalize_name(requirement.name) != "durakube"]
    return own + (requirements(SDK) if project is OPERATOR else [])


@pytest.mark.parametrize("project", PUBLISHED, ids=IDS)
def test_every_dependency_is_locked_with_a_matching_version(project: Project) -> None:
    pins = read_lock(project.lock)
    for requirement in lock_closure(project):
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE_ENVIRONMENT):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {project.lock.name}: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{project.lock.name} pins {name}=={version}, outside {requirement}: run `make lock`")


@pytest.mark.parametrize("lock", ["worker.lock", "operator.lock", "build.lock"])
def test_every_locked_package_has_a_hash(lock: str) -> None:
    pins = read_lock(LOCKS / lock)
    assert pins
    assert not [name for name, (_, hashes) in pins.items() if not hashes]


def test_the_locks_leave_out_the_projects_own_distributions() -> None:
    # They are installed from the wheels built in the image, never from an index.
    for lock in ("worker.lock", "operator.lock"):
        assert not set(read_lock(LOCKS / lock)) & {"durakube", "durakube-operator",
                                                   "durakube-devcluster"}


def test_the_build_lock_holds_what_the_projects_build_with() -> None:
    listed = [Requirement(line) for line in (LOCKS / "build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    pins = read_lock(LOCKS / "build.lock")
    for project in PUBLISHED:
        needed = [Requirement(text) for text in project.pyproject["build-system"]["requires"]]
        assert {str(requirement) for requirement in needed} == {str(r) for r in listed}, project
        for requirement in needed:
            version, _ = pins[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version)
