"""The photo upload page of a report (`GET/POST /upload/{token}`), linked by SMS after a report.

A small bilingual HTML form; the file (JPEG, PNG or PDF, at most 10 MB) is stored under
DATA_DIR/uploads and attached to the report. The token is signed and expires (14 days).
A report takes at most MAX_FILES_PER_REPORT files and MAX_BYTES_PER_REPORT bytes in all (files
sent by MMS count too): past that the link answers 429 (files) or 413 (bytes) with a clear page,
and what was already attached stays. Uploads to one report are handled one at a time per
process, so parallel posts cannot slip past the quota together.
"""

from __future__ import annotations

import asyncio
import html
import logging
import weakref

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import UploadFile

from conversations.upload_links import read_upload_token
from registry_client.errors import InvalidRequest, RecordNotFound, RegistryUnavailable
from registry_client.models import NewAttachment
from settings import Settings
from sms_gateway import media

log = logging.getLogger(__name__)
router = APIRouter(tags=["upload"])

MAX_REQUEST_BYTES = media.MAX_BYTES + 64 * 1024
MAX_FILES_PER_REPORT = 5
MAX_BYTES_PER_REPORT = 20 * 1024 * 1024
_REPORT_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gửi ảnh giấy tiêm · Upload a photo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
.box{{border:1px solid #ccc;border-radius:8px;padding:1rem}} .err{{color:#a00}} .ok{{color:#070}}</style></head>
<body><h1>Gửi ảnh giấy tiêm</h1><p lang="en"><i>Upload a photo of your vaccination card</i></p>
<div class="box">{content}</div></body></html>"""

_FORM = """<p>Phản ánh / Report <b>{ref}</b></p>
<form method="post" enctype="multipart/form-data">
<p><label>Ảnh (JPG, PNG) hoặc PDF, tối đa 10 MB · Photo or PDF, up to 10 MB<br>
<input type="file" name="file" accept="image/jpeg,image/png,application/pdf" required></label></p>
<p><button type="submit">Gửi · Send</button></p></form>"""


def _page(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(content=content), status_code=status)


def _message(vi: str, en: str, css: str = "") -> str:
    return f'<p class="{css}">{html.escape(vi)}<br><i lang="en">{html.escape(en)}</i></p>'


def _ref(request: Request, token: str) -> tuple[str | None, HTMLResponse | None]:
    settings: Settings = request.app.state.settings
    ref, expired = read_upload_token(settings.secret_keys.upload_links, token)
    if ref is not None:
        return ref, None
    if expired:
        return None, _page(_message("Link đã hết hạn.", "This link has expired.", "err"), 410)
    return None, _page(_message("Link không hợp lệ.", "This link is not valid.", "err"), 404)


@router.get("/upload/{token}", response_class=HTMLResponse)
async def upload_form(request: Request, token: str) -> HTMLResponse:
    ref, problem = _ref(request, token)
    if problem is not None:
        return problem
    return _page(_FORM.format(ref=html.escape(ref or "")))


@router.post("/upload/{token}", response_class=HTMLResponse)
async def upload_file(request: Request, token: str) -> HTMLResponse:
    ref, problem = _ref(request, token)
    if problem is not None or ref is None:
        return problem or _page("", 404)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return _page(
            _message("Tệp quá lớn (tối đa 10 MB).", "The file is too large (10 MB at most).", "err"), 413
        )
    try:
        form = await request.form(max_files=1, max_fields=5)
    except Exception:
        return _page(_message("Không đọc được tệp.", "The upload could not be read.", "err"), 400)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return _page(
            _message("Chưa chọn tệp.", "No file chosen.", "err") + _FORM.format(ref=html.escape(ref)), 400
        )
    lock = _REPORT_LOCKS.setdefault(ref, asyncio.Lock())
    async with lock:
        return await _store_within_quota(request, ref, upload)


async def _used(request: Request, ref: str) -> tuple[int, int] | HTMLResponse:
    """(files, bytes) already attached to the report, or the page to answer when it cannot be read."""
    try:
        case = await request.app.state.registry.get_correction(ref)
    except RecordNotFound:
        return _page(
            _message("Phản ánh không còn nhận ảnh.", "This report no longer takes photos.", "err"), 409
        )
    except RegistryUnavailable:
        return _page(
            _message("Hệ thống đang bận, thử lại sau.", "The system is busy, try again later.", "err"), 503
        )
    return len(case.attachments), sum(a.size for a in case.attachments)


async def _store_within_quota(request: Request, ref: str, upload: UploadFile) -> HTMLResponse:
    used = await _used(request, ref)
    if isinstance(used, HTMLResponse):
        return used
    files, size = used
    if files >= MAX_FILES_PER_REPORT:
        return _page(
            _message(
                f"Phản ánh {ref} đã có đủ {MAX_FILES_PER_REPORT} tệp; các tệp đã gửi vẫn được giữ.",
                f"Report {ref} already has {MAX_FILES_PER_REPORT} files; those sent are kept.",
                "err",
            ),
            429,
        )
    content = await upload.read(media.MAX_BYTES + 1)
    if size + len(content) > MAX_BYTES_PER_REPORT:
        return _page(
            _message(
                f"Tổng dung lượng cho một phản ánh tối đa 20 MB; phản ánh {ref} đã dùng {size // 1048576} MB. "
                "Các tệp đã gửi vẫn được giữ.",
                f"A report takes 20 MB in all; report {ref} has used {size // 1048576} MB. "
                "Files already sent are kept.",
                "err",
            )
            + _FORM.format(ref=html.escape(ref)),
            413,
        )
    settings: Settings = request.app.state.settings
    try:
        stored = media.store(settings.data_dir, content, upload.content_type, f"upload-{ref}")
    except media.MediaRejected as exc:
        return _page(
            _message(f"Không nhận tệp này ({exc}).", f"This file was not accepted ({exc}).", "err")
            + _FORM.format(ref=html.escape(ref)),
            415,
        )
    try:
        await request.app.state.registry.add_attachment(
            ref,
            NewAttachment(stored.filename, stored.content_type, stored.size, stored.storage_path),
            "citizen:upload-link",
        )
    except (RecordNotFound, InvalidRequest):
        return _page(
            _message("Phản ánh không còn nhận ảnh.", "This report no longer takes photos.", "err"), 409
        )
    except RegistryUnavailable:
        return _page(
            _message("Hệ thống đang bận, thử lại sau.", "The system is busy, try again later.", "err"), 503
        )
    return _page(_message(f"Đã nhận ảnh cho phản ánh {ref}.", f"Photo received for report {ref}.", "ok"))
