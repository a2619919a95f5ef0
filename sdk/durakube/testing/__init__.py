"""Testing tasks without a cluster: the local runner and its pytest plugin.

    from durakube.testing import LocalRunner

    with LocalRunner("postgresql://localhost/tests") as runner:
        result = runner.run(approve_order, {"order": 7})
        assert result.phase == "Suspended"
        result = runner.complete_token(result.waiting_for.token, {"approved": True})
        assert result.output == {"status": "approved"}

`AsyncLocalRunner` is the same for asyncio tests. With pytest, the `durakube_runner`
fixture (`durakube.testing.pytest_plugin`, loaded by pytest whenever this package
is installed) gives each test a `LocalRunner` on the database of
`--durakube-database-url` or `DURAKUBE_TEST_DATABASE_URL`.
"""

from durakube.testing.running import AsyncLocalRunner, LocalRunner, RunResult

__all__ = ["AsyncLocalRunner", "LocalRunner", "RunResult"]
