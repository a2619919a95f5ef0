"""The pytest plugin of `durakube.testing`, as a user's test suite meets it.

pytest's own `pytester` runs a small user test file in a fresh pytest process of
this environment, where the plugin comes from the `durakube` distribution's
`pytest11` entry point and the database from `DURAKUBE_TEST_DATABASE_URL`.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import durakube


@durakube.task(id="double-it")
def double_it(ctx: durakube.SyncTaskContext, payload: dict) -> dict:
    return {"doubled": ctx.step("double", lambda: payload["n"] * 2)}


@durakube.task(id="wait-a-day")
async def wait_a_day(ctx: durakube.TaskContext, payload: dict) -> dict:
    await ctx.sleep("1d")
    return {"slept": True}


def test_a_sync_task_runs(durakube_runner):
    result = durakube_runner.run(double_it, {"n": 21})
    assert result.phase == "Succeeded"
    assert result.output == {"doubled": 42}
    assert result.step_names() == ["double"]


def test_a_day_long_sleep_is_skipped(durakube_runner):
    result = durakube_runner.run("wait-a-day")
    assert result.phase == "Suspended"
    assert durakube_runner.skip_sleep(result).output == {"slept": True}


def test_a_wrong_expectation_fails(durakube_runner):
    assert durakube_runner.run(double_it, {"n": 1}).output == {"doubled": 3}
'''


def test_users_run_their_tasks_with_the_durakube_runner_fixture(
        pytester: pytest.Pytester, database_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_orders=USER_TESTS)
    monkeypatch.setenv("DURAKUBE_TEST_DATABASE_URL", database_dsn)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*assert {'doubled': 2} == {'doubled': 3}*"])


def test_the_fixture_says_how_to_name_the_database(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_orders=USER_TESTS)
    monkeypatch.delenv("DURAKUBE_TEST_DATABASE_URL", raising=False)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "sync_task")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a Postgres database: set DURAKUBE_TEST_DATABASE_URL*"])
