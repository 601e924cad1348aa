"""The channel webhooks on the shortest path through the ASGI stack.

A USSD gateway posts one request per keypress; the handlers of `POST /ussd`, `/sms/twilio` and
`/sms/twilio/status` take the bare `Request` and read (and bound) their own bodies. FastAPI's
route matching over every console route, its dependency resolution and its exception and
exit-stack middleware cost several times what such a handler needs (measured with
bench/budget.py). `install_webhook_fast_path(app)` puts a dispatcher at the top of the app's
middleware stack: those exact POST paths go straight to their endpoint, wrapped only in what
every response must get — the app's body limit, the request metrics and access log, and the
security headers. Every other request (and any other method on those paths) takes the ordinary
stack, unchanged. (The Telegram webhook reads its body whole and stays on the ordinary stack.)

An endpoint's `HTTPException` is answered as FastAPI answers it (`{"detail": …}` with its status
and headers); any other exception is logged and answered 500, as the ordinary stack does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from web.observability import MetricsMiddleware
from web.security_headers import SecurityHeadersMiddleware

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
# Handlers that bound their own body (the Telegram webhook reads it whole: it keeps the app's limit).
WEBHOOK_PATHS = ("/ussd", "/sms/twilio", "/sms/twilio/status")
_NO_BODY = frozenset({204, 304})


def _http_exception_response(exc: HTTPException) -> Response:
    """What FastAPI's default handler answers for an HTTPException."""
    if exc.status_code in _NO_BODY or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class WebhookFastPath:
    """`POST <path>` of the given routes straight to their endpoints; the rest to `stack`."""

    def __init__(self, stack: ASGIApp, app: Any, routes: Iterable[BaseRoute], *, access_log: bool) -> None:
        self.stack, self.app = stack, app
        self.routes: dict[str, tuple[BaseRoute, Endpoint]] = {
            route.path: (route, route.endpoint)  # type: ignore[attr-defined]
            for route in routes
        }
        fast: ASGIApp = SecurityHeadersMiddleware(MetricsMiddleware(self._serve, access_log=access_log))
        limit = getattr(app, "max_body_size", None)
        if limit is not None:  # the app's own body limit, answered as the ordinary stack answers it
            fast = RequestBodyLimitMiddleware(fast, max_body_size=limit)
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            await self.fast(scope, receive, send)
        else:
            await self.stack(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, endpoint = self.routes[scope["path"]]
        scope["app"], scope["route"] = self.app, route
        scope.setdefault("path_params", {})
        try:
            response = await endpoint(Request(scope, receive, send))
        except HTTPException as exc:
            response = _http_exception_response(exc)
        except Exception:
            log.exception("%s %s failed", scope["method"], route.path)  # type: ignore[attr-defined]
            response = PlainTextResponse("Internal Server Error", status_code=500)
        await response(scope, receive, send)


def install_webhook_fast_path(app: FastAPI, paths: Iterable[str], *, access_log: bool) -> None:
    """The POST routes at `paths` (registered on `app`, taking only the `Request`) are served by
    `WebhookFastPath` at the top of the app's middleware stack (built at the first request)."""
    wanted = set(paths)
    build = app.build_middleware_stack

    def build_with_fast_path() -> ASGIApp:
        routes = [
            r for r in _routes(app.router.routes)
            if getattr(r, "path", None) in wanted and "POST" in (getattr(r, "methods", None) or ())
        ]  # fmt: skip
        missing = wanted - {r.path for r in routes}  # type: ignore[attr-defined]
        assert not missing, f"no POST route for {sorted(missing)}"
        return WebhookFastPath(build(), app, routes, access_log=access_log)

    app.build_middleware_stack = build_with_fast_path  # type: ignore[method-assign]


def _routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, with those of included routers (FastAPI keeps them nested; none of ours is
    included with a prefix, so a route's own path is the path it answers)."""
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is None:
            yield route
        elif not getattr(getattr(route, "include_context", None), "prefix", ""):
            yield from _routes(router.routes)
