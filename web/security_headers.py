"""Security headers on every response the service sends (certificate pages, /verify, the upload
page, JSON APIs, the console), as a plain ASGI middleware: it only appends a few constant
header lines to the response start, so the channel webhooks pay nothing measurable.

A header a route sets itself (the console sends a stricter CSP without inline styles) wins.
The public pages are single self-contained files (one request on a slow phone), so they keep
their inline `<style>`; scripts must come from this origin, except the one inline handler of
the certificate page's print button, allowed by its hash. Referrer-Policy `no-referrer`:
certificate and upload links carry their token in the path and must not leak to other sites.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PRINT_BUTTON = "'sha256-MguIPR6qNR8D3B+eAlK+bIRTZe8t3wkOY4B/56Me9FU='"  # onclick="window.print()"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    f"script-src 'self' 'unsafe-hashes' {_PRINT_BUTTON}; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_NAMES = frozenset(name for name, _ in HEADERS)
# FastAPI's API explorer pages load their script from a CDN and run an inline one: no CSP there.
_EXPLORER_HEADERS = tuple(h for h in HEADERS if h[0] != b"content-security-policy")
_EXPLORER_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        added = _EXPLORER_HEADERS if scope.get("path") in _EXPLORER_PATHS else HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers} & _NAMES
                headers.extend(h for h in added if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
