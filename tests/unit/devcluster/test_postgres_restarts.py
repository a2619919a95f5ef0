"""The test bed's Postgres restarts on its own data folder, keeping what was committed."""

from __future__ import annotations

from pathlib import Path

from devcluster import postgres


def test_a_stopped_server_starts_again_with_its_data(tmp_path: Path) -> None:
    server = postgres.start(tmp_path / "postgres")
    try:
        server.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7)")
        port = server.port
        server.restart()
        assert server.port == port
        assert server.psql("SELECT n FROM kept").strip() == "7"
        # And once more, as an outage test restarts it more than once.
        server.restart()
        assert server.psql("SELECT count(*) FROM kept").strip() == "1"
    finally:
        server.stop()
