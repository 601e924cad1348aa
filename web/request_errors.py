"""Malformed requests are the caller's error (4xx), never ours (500).

- Request bodies above MAX_REQUEST_BYTES get 413 before any handler reads them (FastAPI's
  `max_body_size`; set in app.py). The largest legitimate body is a 10 MB photo upload.
- A request that fails validation gets 422 with the error type, location and message only.
  FastAPI's default handler echoes each error's `input`: for a body that is not JSON that is the
  raw bytes, which it decodes as strict UTF-8, so a non-UTF-8 body turned the 422 into a 500
  (fastapi/fastapi#13111); and an echoed body can carry a password or an ID number.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_REQUEST_BYTES = 11 * 1024 * 1024


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "type": str(error.get("type", "invalid")),
            "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install_request_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
