"""Files citizens send (MMS media, the upload page): checked by type and size, stored under
DATA_DIR/uploads, described as `InboundMedia` for the engine."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from conversations.model import InboundMedia

MAX_BYTES = 10 * 1024 * 1024
KINDS = {  # content type → (extension, magic prefix)
    "image/jpeg": ("jpg", b"\xff\xd8\xff"),
    "image/png": ("png", b"\x89PNG\r\n\x1a\n"),
    "application/pdf": ("pdf", b"%PDF"),
}


class MediaRejected(Exception):
    """A file we do not take; the message is shown to the citizen (short, in English/numbers)."""


def sniff(content: bytes) -> str | None:
    for content_type, (_, magic) in KINDS.items():
        if content.startswith(magic):
            return content_type
    return None


def store(data_dir: Path, content: bytes, declared_type: str | None, folder: str) -> InboundMedia:
    """Checks and stores a file; MediaRejected when it is too big or not a JPEG/PNG/PDF."""
    if len(content) > MAX_BYTES:
        raise MediaRejected(f"{len(content) // (1024 * 1024)} MB > 10 MB")
    content_type = sniff(content)
    if content_type is None:
        raise MediaRejected((declared_type or "unknown type").split(";")[0][:40])
    extension = KINDS[content_type][0]
    directory = data_dir / "uploads" / folder
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.{extension}"
    path = directory / name
    path.write_bytes(content)
    return InboundMedia(storage_path=str(path), content_type=content_type, size=len(content), filename=name)


async def download(
    url: str, auth: tuple[str, str] | None, *, timeout: float = 10.0
) -> tuple[bytes, str | None]:
    """Fetches an MMS media URL (Twilio answers with a redirect to storage), at most MAX_BYTES."""
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True, auth=auth) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise MediaRejected(f"download failed ({response.status_code})")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BYTES:
            raise MediaRejected(f"{int(declared) // (1024 * 1024)} MB > 10 MB")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BYTES:
                raise MediaRejected("> 10 MB")
            chunks.append(chunk)
        return b"".join(chunks), response.headers.get("content-type")
