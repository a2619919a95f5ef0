"""Who may send events through the webhook: the verdicts, the cache and the routes.

The API server is a fake of a few lines (`FakeReviews`); what a real one answers is
tested end to end in tests/e2e/operator/test_event_tenancy.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import test_utils

from durakube.store import waitpoints
from durakube_operator import authenticating, delivering, webhooks

SECRET = "s3cret-shared-with-the-chart"


class FakeReviews:
    """Tokens it knows map to users; `allowed` lists (user, namespace) pairs."""

    def __init__(self, users: dict[str, str], allowed: set[tuple[str, str]]) -> None:
        self.users, self.allowed = users, allowed
        self.calls: list[tuple[str, Any]] = []
        self.failing = False

    async def create_token_review(self, token: str) -> dict[str, Any]:
        self.calls.append(("token", token))
        await asyncio.sleep(0)  # lets concurrent askers pile up on one review
        if self.failing:
            raise OSError("apiserver down")
        user = self.users.get(token)
        return {"status": {"authenticated": True, "user": {"username": user, "groups": ["g"]}}
                if user else {"authenticated": False}}

    async def create_subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("access", spec))
        pair = (spec["user"], spec["resourceAttributes"]["namespace"])
        return {"status": {"allowed": pair in self.allowed}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def authenticator(reviews: FakeReviews, clock: Clock | None = None,
                  secret: str | None = SECRET, size: int = 100,
                  budget: authenticating.RateLimit | None = None) -> authenticating.Authenticator:
    clock = clock or Clock()
    cache = authenticating.ExpiringCache(ttl=10, size=size, clock=clock)
    return authenticating.Authenticator(
        reviews, secret, cache, budget or authenticating.RateLimit(rate=20, burst=40, clock=clock))


REVIEWS = {"sa-token": "system:serviceaccount:team-a:sender",
           "other-token": "system:serviceaccount:team-a:nobody"}
ALLOWED = {("system:serviceaccount:team-a:sender", "team-a")}


@pytest.mark.parametrize(("header", "namespace", "status"), [
    (None, "team-a", 401),
    ("", "team-a", 401),
    ("Basic dXNlcjpwdw==", "team-a", 401),
    ("Bearer ", "team-a", 401),
    ("Bearer not-a-known-token", "team-a", 401),
    ("Bearer other-token", "team-a", 403),
    ("Bearer sa-token", "team-b", 403),
    ("Bearer sa-token", "team-a", None),
    ("bearer sa-token", "team-a", None),
    (f"Bearer {SECRET}", "team-b", None),
], ids=["none", "empty", "basic", "empty-bearer", "unknown-token", "lacks-permission",
        "other-namespace", "allowed", "scheme-any-case", "shared-secret"])
async def test_verdicts(header: str | None, namespace: str, status: int | None) -> None:
    verdict = await authenticator(FakeReviews(REVIEWS, ALLOWED)).may_send_events(header, namespace)
    assert verdict.status == status, verdict.message


async def test_the_permission_reviewed_is_creating_taskevents_in_the_namespace() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    await authenticator(reviews).may_send_events("Bearer sa-token", "team-a")
    [(_, spec)] = [call for call in reviews.calls if call[0] == "access"]
    assert spec == {"user": "system:serviceaccount:team-a:sender", "groups": ["g"],
                    "resourceAttributes": {"verb": "create", "group": "durakube.io",
                                           "resource": "taskevents", "namespace": "team-a"}}


async def test_a_refusal_says_who_lacks_which_permission_where() -> None:
    verdict = await authenticator(FakeReviews(REVIEWS, ALLOWED)).may_send_events(
        "Bearer other-token", "team-a")
    assert verdict.message == ("system:serviceaccount:team-a:nobody may not send events in "
                               "namespace 'team-a': it needs to be allowed to create "
                               "taskevents.durakube.io there")


async def test_the_shared_secret_is_never_sent_for_review() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    assert (await authenticator(reviews).may_send_events(f"Bearer {SECRET}", "x")).allowed
    assert reviews.calls == []


async def test_without_a_shared_secret_an_empty_token_is_no_secret() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    verdict = await authenticator(reviews, secret="").may_send_events("Bearer x", "team-a")
    assert verdict.status == 401


async def test_a_burst_costs_one_review_per_caller_and_namespace() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    auth = authenticator(reviews)
    verdicts = await asyncio.gather(
        *[auth.may_send_events("Bearer sa-token", "team-a") for _ in range(50)])
    assert all(verdict.allowed for verdict in verdicts)
    assert [kind for kind, _ in reviews.calls] == ["token", "access"]


async def test_reviews_expire_after_the_ttl() -> None:
    reviews, clock = FakeReviews(REVIEWS, ALLOWED), Clock()
    auth = authenticator(reviews, clock)
    await auth.may_send_events("Bearer sa-token", "team-a")
    clock.now = 9.9
    await auth.may_send_events("Bearer sa-token", "team-a")
    assert len(reviews.calls) == 2
    # Revoking the permission takes effect once the cached answer expires.
    reviews.allowed = set()
    clock.now = 10.1
    assert (await auth.may_send_events("Bearer sa-token", "team-a")).status == 403
    assert len(reviews.calls) == 4


async def test_the_cache_is_bounded_and_never_keys_on_the_token() -> None:
    reviews = FakeReviews({f"t{i}": f"u{i}" for i in range(20)}, set())
    auth = authenticator(reviews, size=8)
    for i in range(20):
        await auth.may_send_events(f"Bearer t{i}", "team-a")
    assert len(auth.cache) == 8
    assert not any("t1" == part for key in auth.cache._entries for part in key)


async def test_an_unreachable_api_server_is_503_and_not_remembered() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    auth = authenticator(reviews)
    reviews.failing = True
    assert (await auth.may_send_events("Bearer sa-token", "team-a")).status == 503
    reviews.failing = False
    assert (await auth.may_send_events("Bearer sa-token", "team-a")).allowed


class RecordingDeliverer(delivering.Deliverer):
    def __init__(self) -> None:
        super().__init__(db=None, poke=lambda: None)
        object.__setattr__(self, "sent", [])

    async def send_event(self, namespace: str, key: str, data: Any,
                         event_id: str | None = None) -> waitpoints.Delivery:
        self.sent.append((namespace, key, data, event_id))  # type: ignore[attr-defined]
        return waitpoints.Delivery(event_id or "e1", ["run-1"], buffered=False)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[test_utils.TestClient, RecordingDeliverer]]:
    deliverer = RecordingDeliverer()
    app = webhooks.build_app(deliverer, authenticator(FakeReviews(REVIEWS, ALLOWED)))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client, deliverer


@pytest.mark.parametrize(("path", "header", "status"), [
    ("/v1/namespaces/team-a/events/order-1", None, 401),
    ("/v1/namespaces/team-a/events/order-1", "Bearer other-token", 403),
    ("/v1/namespaces/team-b/events/order-1", "Bearer sa-token", 403),
    ("/v1/namespaces/team-a/events/durakube.io%2Frun%2Fteam-a%2Fp-c1", "Bearer sa-token", 403),
    ("/v1/namespaces/team-a/events/durakube.io%2Frun%2Fteam-a%2Fp-c1", f"Bearer {SECRET}", 403),
    ("/v1/events/order-1", f"Bearer {SECRET}", 404),
    ("/v1/namespaces/team-a/events/order-1", "Bearer sa-token", 202),
], ids=["no-credentials", "lacks-permission", "other-namespace", "child-result",
        "child-result-with-secret", "old-global-route-gone", "allowed"])
async def test_event_routes(webhook: tuple[test_utils.TestClient, RecordingDeliverer], path: str,
                            header: str | None, status: int) -> None:
    client, deliverer = webhook
    headers = {"Authorization": header} if header else {}
    response = await client.post(path, json={"paid": True}, headers=headers)
    assert response.status == status, await response.text()
    if status == 202:
        assert deliverer.sent == [("team-a", "order-1", {"paid": True}, None)]
        assert await response.json() == {"eventId": "e1", "deliveredTo": 1, "buffered": False}
    else:
        assert deliverer.sent == []
    if status == 403 and "durakube.io" in path:
        assert "reserved" in (await response.json())["error"]


async def test_a_caller_hanging_up_cancels_no_other_callers_review() -> None:
    reviews = FakeReviews(REVIEWS, ALLOWED)
    auth = authenticator(reviews)
    first = asyncio.ensure_future(auth.may_send_events("Bearer sa-token", "team-a"))
    second = asyncio.ensure_future(auth.may_send_events("Bearer sa-token", "team-a"))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).allowed
    assert first.cancelled()


async def test_a_flood_of_made_up_tokens_is_throttled_not_sent_for_review() -> None:
    reviews, clock = FakeReviews(REVIEWS, ALLOWED), Clock()
    auth = authenticator(reviews, clock, budget=authenticating.RateLimit(rate=2, burst=4,
                                                                          clock=clock))
    # A known caller, reviewed once: its cached answers need no budget.
    assert (await auth.may_send_events("Bearer sa-token", "team-a")).allowed
    verdicts = [await auth.may_send_events(f"Bearer made-up-{i}", "team-a") for i in range(10)]
    assert [verdict.status for verdict in verdicts] == [401, 401] + [429] * 8
    assert len(reviews.calls) == 4  # the budget's burst: 2 for the caller, 2 made-up tokens
    assert verdicts[-1].retry_after == pytest.approx(0.5)
    assert (await auth.may_send_events("Bearer sa-token", "team-a")).allowed
    # A throttled answer is not remembered, and the budget refills with time.
    clock.now = 1.0
    assert (await auth.may_send_events("Bearer made-up-9", "team-a")).status == 401


async def test_a_throttled_request_is_429_with_retry_after() -> None:
    clock = Clock()
    auth = authenticator(FakeReviews(REVIEWS, ALLOWED), clock,
                         budget=authenticating.RateLimit(rate=0.25, burst=1, clock=clock))
    app = webhooks.build_app(RecordingDeliverer(), auth)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        first = await client.post("/v1/namespaces/team-a/events/k", headers={
            "Authorization": "Bearer made-up-1"})
        second = await client.post("/v1/namespaces/team-a/events/k", headers={
            "Authorization": "Bearer made-up-2"})
        assert (first.status, second.status) == (401, 429)
        assert second.headers["Retry-After"] == "4"
        assert "try again" in (await second.json())["error"]
