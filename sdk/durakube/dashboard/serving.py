"""The dashboard's HTTP server: routes, the guard in front of actions, errors as pages.

    GET  /runs                             the runs list (filters as query parameters)
    GET  /runs/{namespace}/{name}          one run
    GET  /runs/{namespace}/{name}/payload.json, /output.json      downloads
    POST /runs/{namespace}/{name}/cancel, /replay, /event, /token  actions
    GET  /queues, /tasks                   queues and tasks
    GET  /static/...                       the stylesheet and the vendored htmx

Pages are whole HTML documents; the same URLs asked by htmx (header `HX-Request`)
answer the part that updates live, which is how the lists and a running run
refresh every few seconds without a page load. Every handler turns the API's 403
into a 403 page (or fragment) that quotes the RBAC message, a missing run into a
404, and any other Durakube error into a message, never a traceback.

Actions change things with the user's credentials, so a page of another site must
not be able to trigger them from the user's browser: each POST carries a secret
made at start (`X-Durakube-CSRF` header, or the `csrf` form field), and requests
whose Host is not one this server listens on are refused (DNS rebinding).

Built with aiohttp (also the Kubernetes client's HTTP library) and Jinja2; see the
package's docstring for why.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from durakube import errors
from durakube.client import AsyncClient, failures, kubeapi
from durakube.dashboard import acting, filters, reading, rendering

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_HEADER = "X-Durakube-CSRF"
# Seconds between live refreshes of a list or an active run.
REFRESH_SECONDS = 3
MAX_FORM_BYTES = 1024 * 1024


class Settings:
    """What every handler shares besides the client."""

    def __init__(self, *, namespace: str | None, hosts: set[str], read_only: bool = False) -> None:
        self.namespace = namespace  # the default namespace filter; None: all namespaces
        self.hosts = hosts  # Host header names accepted; empty: any (served behind a proxy)
        self.read_only = read_only
        self.csrf = secrets.token_urlsafe(24)
        self.environment: jinja2.Environment = rendering.build_environment()


CLIENT: web.AppKey[AsyncClient] = web.AppKey("client", AsyncClient)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)


def build_app(client: AsyncClient, *, namespace: str | None, hosts: set[str] | None = None,
              read_only: bool = False) -> web.Application:
    """The application serving `client`'s view; `namespace` None lists every namespace."""
    app = web.Application(middlewares=[_guard, _errors], client_max_size=MAX_FORM_BYTES)
    app[CLIENT] = client
    app[SETTINGS] = Settings(namespace=namespace, hosts=hosts or set(), read_only=read_only)
    app.router.add_get("/", _home)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/runs", runs_page)
    app.router.add_get("/runs/{namespace}/{name}", run_page)
    app.router.add_get("/runs/{namespace}/{name}/payload.json", payload_download)
    app.router.add_get("/runs/{namespace}/{name}/output.json", output_download)
    app.router.add_post("/runs/{namespace}/{name}/{action:cancel|replay|event|token}", run_action)
    app.router.add_get("/queues", queues_page)
    app.router.add_get("/tasks", tasks_page)
    app.router.add_static("/static", rendering.STATIC)
    return app


# Pages.


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/runs")


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def runs_page(request: web.Request) -> web.StreamResponse:
    settings, client = request.app[SETTINGS], request.app[CLIENT]
    wanted = filters.RunFilter.from_query(request.query, settings.namespace)
    now = datetime.now(UTC)
    listed = await reading.list_runs(client, wanted, now)
    template = "runs_table.html" if _is_htmx(request) else "runs.html"
    return _page(request, template, listed=listed, wanted=wanted, phases=filters.PHASES,
                 windows=list(filters.WINDOWS), title="Runs", section="runs")


async def run_page(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    live = _is_htmx(request) and request.query.get("part") == "live"
    page = await reading.read_run(request.app[CLIENT], namespace, name, datetime.now(UTC),
                                  with_logs=not live)
    return _page(request, "run_live.html" if live else "run.html", page=page,
                 title=f"{name} · Runs", section="runs")


async def queues_page(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    page = await reading.list_queues(request.app[CLIENT], namespace)
    return _page(request, "queues_table.html" if _is_htmx(request) else "queues.html", page=page,
                 namespace=namespace, title="Queues", section="queues")


async def tasks_page(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    page = await reading.list_tasks(request.app[CLIENT], namespace)
    return _page(request, "tasks.html", page=page, namespace=namespace, title="Tasks",
                 section="tasks")


async def payload_download(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    value = await reading.read_payload(request.app[CLIENT], namespace, name)
    return _download(f"{name}-payload.json", value)


async def output_download(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    value = await reading.read_output(request.app[CLIENT], namespace, name)
    return _download(f"{name}-output.json", value)


def _download(filename: str, value: Any) -> web.Response:
    return web.Response(text=json.dumps(value, indent=2, ensure_ascii=False, default=str),
                        content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# Actions.


async def run_action(request: web.Request) -> web.StreamResponse:
    settings, client = request.app[SETTINGS], request.app[CLIENT]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    action = request.match_info["action"]
    if settings.read_only:
        return _flash(request, 403, "error", "This dashboard is read-only: actions are turned off.")
    form = await request.post()
    data = _form_json(str(form.get("data") or ""))
    if action == "cancel":
        done = await acting.cancel(client, namespace, name)
    elif action == "replay":
        done = await acting.replay(client, namespace, name)
    elif action == "event":
        done = await acting.send_event(client, namespace, str(form.get("key") or "").strip(), data)
    else:
        done = await acting.complete_token(client, namespace, name, data)
    if not _is_htmx(request):
        raise web.HTTPSeeOther(done.link or f"/runs/{namespace}/{name}")
    response = _flash(request, 200, "ok", done.message, link=done.link)
    # The live part of the run page reloads at once rather than at its next tick.
    response.headers["HX-Trigger"] = "refresh"
    return response


def _form_json(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise acting.ActionRefused("read the data", f"it is not valid JSON: {error}") from None


# Middlewares.


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses foreign Host headers, and POSTs without this server's secret."""
    settings = request.app[SETTINGS]
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if settings.hosts and host not in settings.hosts:
        return web.Response(status=421, text=f"this dashboard does not serve host {host!r}")
    if request.method == "POST":
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            given = str((await request.post()).get("csrf") or "")
        if not hmac.compare_digest(given.encode(), settings.csrf.encode()):
            return web.Response(status=403, text="missing or wrong form secret: reload the page")
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API's and Durakube's errors as pages (or fragments) that say what happened."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except failures.PermissionDenied as denied:
        return _problem(request, 403, "Forbidden by Kubernetes RBAC", str(denied))
    except failures.TaskRunNotFound as missing:
        return _problem(request, 404, "Not found", str(missing))
    except (acting.ActionRefused, failures.RunNotFinished, failures.RunFailed) as refused:
        return _problem(request, 409, "Not possible", str(refused))
    except (errors.DurakubeError, ValueError) as error:
        return _problem(request, 400, "Error", str(error))
    except kubeapi.ApiException as error:
        return _problem(request, 502, "The Kubernetes API answered an error",
                        f"{error.status} {error.reason}")


def _problem(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    logger.info("%s %s -> %d: %s", request.method, request.path, status, message)
    if request.method == "POST" and _is_htmx(request):
        return _flash(request, status, "error", f"{heading}: {message}")
    html = rendering.render(request.app[SETTINGS].environment, "problem.html",
                            **_common(request), heading=heading, message=message, status=status,
                            title=heading, section="")
    return web.Response(status=status, text=html, content_type="text/html")


def _flash(request: web.Request, status: int, kind: str, message: str, *,
           link: str | None = None) -> web.Response:
    html = rendering.render(request.app[SETTINGS].environment, "flash.html", kind=kind,
                            message=message, link=link, status=status)
    return web.Response(status=status, text=html, content_type="text/html")


# Helpers.


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    html = rendering.render(request.app[SETTINGS].environment, template, **_common(request),
                            **context)
    return web.Response(text=html, content_type="text/html")


def _common(request: web.Request) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    client = request.app[CLIENT]
    return {"csrf": settings.csrf, "read_only": settings.read_only,
            "refresh_seconds": REFRESH_SECONDS, "has_database": client.database_url is not None,
            "default_namespace": settings.namespace or filters.ALL_NAMESPACES,
            "path": request.path}


def _namespace(request: web.Request) -> str | None:
    asked = request.query.get("namespace") or request.app[SETTINGS].namespace
    return None if not asked or asked == filters.ALL_NAMESPACES else asked


def _is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"
