"""Reading gateway requests defensively: bounded bodies, strict UTF-8 form decoding."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or 413 when it is larger than `limit` bytes (checked while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, "request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded → {name: last value}; 400 when it is not valid UTF-8."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, "form data must be UTF-8") from exc
    return {key: value for key, value in pairs}
