"""The console's route class: turns the console's own errors into pages (or JSON under /api/)
for console routes only, so no app-wide exception handler is needed."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry_client.errors import RecordNotFound, RegistryUnavailable
from web.console.access import Denied, LoginRequired, PageNotFound
from web.console.pages import redirect, render
from web.request_errors import validation_error


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, reason: str) -> Response:
    if _is_api(request):
        headers = {"Retry-After": "30"} if status == 503 else None
        return JSONResponse({"detail": reason}, status_code=status, headers=headers)
    return render(request, "console/error.html", {"status": status, "reason": reason}, status_code=status)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                if _is_api(request):
                    return JSONResponse(
                        {"detail": "not_authenticated"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                return redirect(f"/agent/login?next={quote(exc.next_path, safe='/?=&')}")
            except Denied as exc:
                return _error(request, 403, exc.key)
            except PageNotFound as exc:
                return _error(request, 404, exc.key)
            except RecordNotFound:
                return _error(request, 404, "not_found")
            except RegistryUnavailable:
                return _error(request, 503, "registry_unavailable")
            except RequestValidationError as exc:
                if _is_api(request):
                    return await validation_error(request, exc)  # never echoes the body
                return _error(request, 422, "bad_input")

        return console_handler


def console_router(**kwargs: Any) -> APIRouter:
    return APIRouter(
        route_class=ConsoleRoute, include_in_schema=kwargs.pop("include_in_schema", False), **kwargs
    )
