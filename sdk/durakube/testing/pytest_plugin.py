"""The pytest plugin of `durakube.testing`: fixtures that run tasks against Postgres alone.

pytest loads it through the `pytest11` entry point of the `durakube` distribution, so
installing the SDK is enough. Users bring a Postgres database (a login that may
create Durakube's schema there) and name it with `--durakube-database-url`, the
ini option `durakube_database_url`, or `DURAKUBE_TEST_DATABASE_URL`:

    def test_order_is_approved(durakube_runner):
        result = durakube_runner.run("approve-order", {"order": 7})
        result = durakube_runner.complete_token(result.waiting_for.token, {"approved": True})
        assert result.succeeded

Each test gets a runner of its own, in a namespace of its own, so an event one test
sends never reaches another's runs. The step engine is imported on first use only:
loading this plugin costs a pytest run that does not use it nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from durakube.testing.running import LocalRunner

ENVIRONMENT_VARIABLE = "DURAKUBE_TEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("durakube", "Durakube's local runner")
    group.addoption("--durakube-database-url", default=None, metavar="DSN",
                    help=f"Postgres for the durakube_runner fixture (default: "
                         f"${ENVIRONMENT_VARIABLE})")
    parser.addini("durakube_database_url", "Postgres for the durakube_runner fixture",
                  default=None)


@pytest.fixture(scope="session")
def durakube_database_url(request: pytest.FixtureRequest) -> str:
    """The Postgres DSN the local runner uses: the option, the ini value or the variable."""
    url = (request.config.getoption("--durakube-database-url")
           or request.config.getini("durakube_database_url")
           or os.environ.get(ENVIRONMENT_VARIABLE))
    if not url:
        pytest.fail(f"the durakube_runner fixture needs a Postgres database: set "
                    f"{ENVIRONMENT_VARIABLE} or pass --durakube-database-url", pytrace=False)
    return str(url)


@pytest.fixture
def durakube_runner(durakube_database_url: str) -> Iterator[LocalRunner]:
    """A `LocalRunner` of the default task registry, in a namespace of this test's own;
    back-off between attempts is skipped."""
    from durakube.testing.running import LocalRunner

    runner = LocalRunner(durakube_database_url, namespace=f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield runner
    finally:
        runner.close()
