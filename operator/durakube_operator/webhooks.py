"""The operator's HTTP endpoint for webhooks: complete tokens and send events.

    POST /v1/tokens/{token}/complete                body: JSON data (optional)
         -> 200 {"runId": ..., "completed": true}
    POST /v1/namespaces/{namespace}/events/{key}    body: JSON data (optional)
         Authorization: Bearer <Kubernetes token or the webhook's shared secret>
         -> 202 {"eventId": ..., "deliveredTo": n, "buffered": bool}

A token is its own credential (192 random bits), so completing one needs nothing
else; an unknown token is 404 and an already completed one 409, with a message
that says which (showing only the token's first characters).

An event is sent within one namespace, and only by a caller `authenticating` lets
in: no credentials or invalid ones are 401, a caller not allowed to create
TaskEvents in that namespace 403, and 429 (with Retry-After) while more new
credentials arrive than the review budget allows. A key under `durakube.io/` (children's results,
which only the operator sends) is 403 too. There is no unauthenticated way to
send an event. Served with aiohttp (kopf's own HTTP library) by every replica
(`serving`).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web

from durakube import errors, limits
from durakube.store import waitpoints
from durakube_operator import authenticating, delivering

logger = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024


def _error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return web.json_response({"error": message}, status=status, headers=headers)


async def _read_data(request: web.Request) -> tuple[Any, web.Response | None]:
    raw = await request.read()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as error:
        return None, _error(400, f"the body is not JSON: {error}")
    except UnicodeDecodeError as error:
        return None, _error(400, f"the body is not UTF-8 text: {error}")
    except RecursionError:
        return None, _error(400, f"the body nests deeper than {limits.MAX_DEPTH} levels")


def build_app(deliverer: delivering.Deliverer,
              authenticator: authenticating.Authenticator) -> web.Application:
    async def complete_token(request: web.Request) -> web.Response:
        data, problem = await _read_data(request)
        if problem is not None:
            return problem
        try:
            run_id = await deliverer.complete_token(request.match_info["token"], data)
        except errors.ValueRefused as error:
            return _error(400, str(error))
        except waitpoints.TokenNotFound as error:
            return _error(404, str(error))
        except waitpoints.TokenAlreadyCompleted as error:
            return _error(409, str(error))
        return web.json_response({"runId": run_id, "completed": True})

    async def send_event(request: web.Request) -> web.Response:
        namespace, key = request.match_info["namespace"], request.match_info["key"]
        verdict = await authenticator.may_send_events(request.headers.get("Authorization"),
                                                      namespace)
        if not verdict.allowed:
            assert verdict.status is not None
            return _error(verdict.status, verdict.message, verdict.retry_after)
        if waitpoints.is_reserved_key(key):
            return _error(403, str(waitpoints.ReservedEventKey(key)))
        data, problem = await _read_data(request)
        if problem is not None:
            return problem
        try:
            delivery = await deliverer.send_event(namespace, key, data,
                                                  event_id=request.headers.get("Idempotency-Key"))
        except errors.ValueRefused as error:
            return _error(400, str(error))
        logger.info("event on %r in namespace %s from %s: delivered to %d run(s)%s", key,
                    namespace, verdict.caller, len(delivery.run_ids),
                    ", buffered" if delivery.buffered else "")
        return web.json_response({"eventId": delivery.event_id, "deliveredTo": len(delivery.run_ids),
                                  "buffered": delivery.buffered}, status=202)

    app = web.Application(client_max_size=_MAX_BODY)
    app.router.add_post("/v1/tokens/{token}/complete", complete_token)
    app.router.add_post("/v1/namespaces/{namespace}/events/{key}", send_event)
    return app
