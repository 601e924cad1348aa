"""Report photos: stored under DATA_DIR, served only to users who may see the report."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from db.private_files import write_private_file
from registry_client.models import Attachment, NewAttachment

MAX_BYTES = 8 * 1024 * 1024
# Served inline: images and PDF only; anything else is offered as a download.
INLINE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "application/pdf"}
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"GIF8", "image/gif", "gif"),
    (b"%PDF-", "application/pdf", "pdf"),
)


class UploadProblem(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def sniff(data: bytes) -> tuple[str, str] | None:
    for magic, content_type, ext in _MAGIC:
        if data.startswith(magic):
            return content_type, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def store_upload(data_dir: Path, ref: str, filename: str, data: bytes) -> NewAttachment:
    if not data:
        raise UploadProblem("upload_empty")
    if len(data) > MAX_BYTES:
        raise UploadProblem("upload_too_big")
    kind = sniff(data)
    if kind is None:
        raise UploadProblem("upload_bad_type")
    content_type, ext = kind
    relative = Path("uploads") / ref / f"{secrets.token_hex(8)}.{ext}"
    target = data_dir / relative
    write_private_file(target, data)  # 0600 from creation, its folder 0700
    clean_name = "".join(c for c in Path(filename or "photo").name if c.isprintable())[:120] or f"photo.{ext}"
    # the same convention as sms_gateway.media.store: the path as written under DATA_DIR
    return NewAttachment(clean_name, content_type, len(data), str(target))


@dataclass(frozen=True)
class Servable:
    path: Path
    content_type: str
    inline: bool


def resolve_attachment(data_dir: Path, attachment: Attachment) -> Servable | None:
    """The file of an attachment, only when it lies inside DATA_DIR (no path tricks)."""
    base = data_dir.resolve()
    raw = Path(attachment.storage_path)
    # absolute, or relative to the working directory (DATA_DIR/uploads/...), or relative to DATA_DIR
    candidates = [raw.resolve()] if raw.is_absolute() else [raw.resolve(), (base / raw).resolve()]
    path = next((p for p in candidates if p.is_relative_to(base) and p.is_file()), None)
    if path is None:
        return None
    content_type = (
        attachment.content_type if attachment.content_type in INLINE_TYPES else "application/octet-stream"
    )
    return Servable(path, content_type, content_type in INLINE_TYPES)
