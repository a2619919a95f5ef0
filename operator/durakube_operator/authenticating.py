"""Who may send events through the webhook, decided from the caller's bearer token.

A caller sends `Authorization: Bearer <token>`, where the token is either

- the webhook's shared secret (the chart generates one; DURAKUBE_WEBHOOK_SECRET or
  DURAKUBE_WEBHOOK_SECRET_FILE), which may send into any namespace: it is the
  administrator's; or
- a Kubernetes token (a ServiceAccount's, or a user's), which the API server
  authenticates (a TokenReview) and which may send into a namespace when RBAC lets
  its holder create `taskevents.durakube.io` there (a SubjectAccessReview): the
  webhook grants nothing that a TaskEvent would not.

The verdict is an HTTP status: 401 without valid credentials, 403 for a known
caller lacking the permission, 503 when the API server could not be asked, else
allowed. Reviews are cached briefly (`ttl`, bounded in size, keyed by a hash of the
token, never the token) and concurrent requests with the same question share one
review, so a burst of events costs the API server one call per caller and
namespace. A failed review is not cached. The reviews not answered from the cache
draw on a budget (`RateLimit`, 20 a second with bursts of 40 by default): a flood
of made-up tokens, each a new question, gets 429 with a Retry-After instead of
becoming a flood of calls to the API server.

Called by `webhooks`; asks the API server through `kubeapi` only, knows nothing of
events or Postgres, and never logs a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from durakube import resources

logger = logging.getLogger(__name__)

# How long a review is trusted, and how many are kept (oldest dropped first).
REVIEW_TTL_SECONDS = 10.0
REVIEW_CACHE_SIZE = 1024

# What sending an event into a namespace takes: the right to create a TaskEvent there.
SEND_EVENT_ATTRIBUTES = {"verb": "create", "group": resources.GROUP, "resource": "taskevents"}

# The budget of reviews the cache did not answer: per second, and at most at once.
REVIEWS_PER_SECOND = 20.0
REVIEW_BURST = 40

UNAUTHORIZED, FORBIDDEN, TOO_MANY_REQUESTS, UNAVAILABLE = 401, 403, 429, 503


@dataclass(frozen=True)
class Identity:
    """A caller the API server authenticated (a TokenReview's `status.user`)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_review(cls, user: dict[str, Any]) -> Identity:
        extra = user.get("extra") or {}
        return cls(username=str(user.get("username", "")), uid=str(user.get("uid") or ""),
                   groups=tuple(user.get("groups") or ()),
                   extra=tuple(sorted((key, tuple(values)) for key, values in extra.items())))

    def review_spec(self, namespace: str) -> dict[str, Any]:
        """The SubjectAccessReview spec: may this caller send events into `namespace`?"""
        spec: dict[str, Any] = {"user": self.username, "groups": list(self.groups),
                                "resourceAttributes": {**SEND_EVENT_ATTRIBUTES,
                                                       "namespace": namespace}}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = {key: list(values) for key, values in self.extra}
        return spec


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go on: `status` None when it may, else the HTTP status to
    answer with and a message that says why and what to do."""

    status: int | None
    message: str = ""
    caller: str = ""
    # Seconds to wait before asking again (a Retry-After), when throttled.
    retry_after: float | None = None

    @property
    def allowed(self) -> bool:
        return self.status is None


class Reviews(Protocol):
    """The two API calls a verdict needs (`kubeapi.KubeApi` has them)."""

    async def create_token_review(self, token: str) -> dict[str, Any]: ...

    async def create_subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]: ...


class ExpiringCache:
    """At most `size` answers, each for `ttl` seconds (the oldest dropped first).

    An answer is computed once, in a task of its own that every asker of that key
    awaits: a burst shares one computation, and an asker that goes away (a client
    hanging up) cancels nobody else's. A computation that fails leaves nothing behind."""

    def __init__(self, ttl: float = REVIEW_TTL_SECONDS, size: int = REVIEW_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[Any, tuple[float, asyncio.Future[Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            answer = asyncio.ensure_future(compute())
            entry = (now + self.ttl, answer)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            answer.add_done_callback(lambda done: self._forget_failure(key, done))
        return await asyncio.shield(entry[1])

    def _forget_failure(self, key: Any, answer: asyncio.Future[Any]) -> None:
        # Reading the exception here also keeps asyncio from reporting it as never retrieved.
        if answer.cancelled() or answer.exception() is not None:
            if (current := self._entries.get(key)) is not None and current[1] is answer:
                del self._entries[key]


class Throttled(Exception):
    """The review budget is spent: ask again in `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"no review budget left for {retry_after:.2f}s")
        self.retry_after = retry_after


class RateLimit:
    """A token bucket: `rate` a second on average, up to `burst` at once."""

    def __init__(self, rate: float = REVIEWS_PER_SECOND, burst: int = REVIEW_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> None:
        """Takes one token; raises `Throttled` with the wait for the next when none is left."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1.0:
            raise Throttled((1.0 - self._tokens) / self.rate)
        self._tokens -= 1.0


class Authenticator:
    """Decides whether a request may send events into a namespace."""

    def __init__(self, reviews: Reviews, secret: str | None = None,
                 cache: ExpiringCache | None = None, budget: RateLimit | None = None) -> None:
        self.reviews = reviews
        self.secret = secret or None
        self.cache = cache if cache is not None else ExpiringCache()
        self.budget = budget if budget is not None else RateLimit()

    async def may_send_events(self, authorization: str | None, namespace: str) -> Verdict:
        token = bearer_token(authorization)
        if token is None:
            return Verdict(UNAUTHORIZED, "sending events needs credentials: a bearer token (a "
                           "Kubernetes token allowed to create taskevents.durakube.io in the "
                           "namespace, or the webhook's shared secret)")
        if self.secret is not None and hmac.compare_digest(token.encode(), self.secret.encode()):
            return Verdict(None, caller="the webhook's shared secret")
        try:
            identity = await self.cache.get(("token", _digest(token)),
                                            lambda: self._review_token(token))
            if identity is None:
                return Verdict(UNAUTHORIZED, "the bearer token is neither a valid Kubernetes "
                               "token nor the webhook's shared secret")
            allowed = await self.cache.get(("access", identity, namespace),
                                           lambda: self._review_access(identity, namespace))
        except asyncio.CancelledError:
            raise
        except Throttled as throttled:
            return Verdict(TOO_MANY_REQUESTS, "too many credentials to check at once; try again "
                           "shortly", retry_after=throttled.retry_after)
        except Exception as error:
            logger.warning("could not review a webhook caller with the Kubernetes API: %s",
                           getattr(error, "reason", None) or type(error).__name__)
            return Verdict(UNAVAILABLE, "the Kubernetes API could not check the credentials; "
                           "try again")
        if not allowed:
            return Verdict(FORBIDDEN, f"{identity.username} may not send events in namespace "
                           f"{namespace!r}: it needs to be allowed to create "
                           f"taskevents.durakube.io there", caller=identity.username)
        return Verdict(None, caller=identity.username)

    async def _review_token(self, token: str) -> Identity | None:
        self.budget.take()
        status = (await self.reviews.create_token_review(token)).get("status") or {}
        if not status.get("authenticated"):
            return None
        return Identity.from_review(status.get("user") or {})

    async def _review_access(self, identity: Identity, namespace: str) -> bool:
        self.budget.take()
        review = await self.reviews.create_subject_access_review(identity.review_spec(namespace))
        return bool((review.get("status") or {}).get("allowed"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
