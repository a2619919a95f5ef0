"""The operator's HTTP endpoint for webhooks: complete tokens and send events.

    POST /v1/tokens/{token}/complete   body: JSON data (optional)  -> 200 {"runId": ...}
    POST /v1/events/{key}              body: JSON data (optional)  -> 202 {"deliveredTo": n, ...}

A token is its own credential (192 random bits), so completing one needs nothing
else; an unknown token is 404 and an already completed one 409, with a message
that says which. Sending events to keys needs the bearer secret in
DURAKUBE_WEBHOOK_SECRET when one is set. Served with aiohttp (kopf's own HTTP
library) by every replica (`serving`).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from durakube.store import waitpoints
from durakube_operator import delivering

_MAX_BODY = 1024 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_data(request: web.Request) -> tuple[Any, web.Response | None]:
    raw = await request.read()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as error:
        return None, _error(400, f"the body is not JSON: {error}")


def build_app(deliverer: delivering.Deliverer, secret: str | None) -> web.Application:
    async def complete_token(request: web.Request) -> web.Response:
        data, problem = await _read_data(request)
        if problem is not None:
            return problem
        try:
            run_id = await deliverer.complete_token(request.match_info["token"], data)
        except waitpoints.TokenNotFound as error:
            return _error(404, str(error))
        except waitpoints.TokenAlreadyCompleted as error:
            return _error(409, str(error))
        return web.json_response({"runId": run_id, "completed": True})

    async def send_event(request: web.Request) -> web.Response:
        if secret:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), secret.encode()):
                return _error(401, "sending events needs the webhook secret as a bearer token")
        data, problem = await _read_data(request)
        if problem is not None:
            return problem
        delivery = await deliverer.send_event(request.match_info["key"], data,
                                              event_id=request.headers.get("Idempotency-Key"))
        return web.json_response({"eventId": delivery.event_id, "deliveredTo": len(delivery.run_ids),
                                  "buffered": delivery.buffered}, status=202)

    app = web.Application(client_max_size=_MAX_BODY)
    app.router.add_post("/v1/tokens/{token}/complete", complete_token)
    app.router.add_post("/v1/events/{key}", send_event)
    return app

