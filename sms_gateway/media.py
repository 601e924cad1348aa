"""Files citizens send (MMS media, the upload page): checked by type and size, stored under
DATA_DIR/uploads, described as `InboundMedia` for the engine.

MMS media are fetched only from Twilio (`download`): the URL a webhook names must be on the
host of TWILIO_API_BASE (same scheme, host and port) and have the path of a Twilio media
resource; it is fetched with the account's credentials. Twilio answers a media URL with a
redirect to its media store; a redirect is followed (at most `MAX_REDIRECTS`, never with the
credentials) only to `https` on a host (and path) of `TWILIO_MEDIA_HOSTS` that resolves to
public addresses — anything else is refused unrequested. Only images (JPEG, PNG) up to MAX_BYTES are
kept. The reason given back never repeats what the other side answered (status, content type).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from conversations.model import InboundMedia
from db.private_files import write_private_file

MAX_BYTES = 10 * 1024 * 1024
KINDS = {  # content type → (extension, magic prefix)
    "image/jpeg": ("jpg", b"\xff\xd8\xff"),
    "image/png": ("png", b"\x89PNG\r\n\x1a\n"),
    "application/pdf": ("pdf", b"%PDF"),
}
MMS_TYPES = frozenset({"image/jpeg", "image/png"})  # what an MMS may bring
# Where Twilio's media redirects lead: mms.twiliocdn.com (accounts that enforce HTTP auth on
# media, short-lived URLs), media.twiliocdn.com, and the older public store, Twilio's bucket on
# S3 (path style). Host → path prefix; https only, public addresses only.
TWILIO_MEDIA_HOSTS = {
    "mms.twiliocdn.com": "/",
    "media.twiliocdn.com": "/",
    "s3-external-1.amazonaws.com": "/media.twiliocdn.com/",
}
# A voice call's recorded description (<Record>): a WAV from the account's Recordings resource.
RECORDING_TYPES = frozenset({"audio/x-wav", "audio/wav"})
MAX_RECORDING_BYTES = 4 * 1024 * 1024  # 60 s of 8 kHz 16-bit mono is under 1 MB
MAX_REDIRECTS = 2
_MEDIA_PATH = re.compile(r"^/2010-04-01/Accounts/AC\w{1,64}/Messages/MM\w{1,64}/Media/ME\w{1,64}$")
_RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/AC\w{1,64}/Recordings/RE\w{1,64}(\.wav)?$")

# Reasons (shown to the citizen in the reply): fixed words, never the remote side's answer.
TOO_BIG = "> 10 MB"
NOT_A_PHOTO = "not a photo"
NOT_FETCHED = "download failed"


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
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.{extension}"
    path = directory / name
    write_private_file(path, content)  # 0600 from creation
    return InboundMedia(storage_path=str(path), content_type=content_type, size=len(content), filename=name)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def is_twilio_media_url(url: str, api_base: str, path: re.Pattern[str] = _MEDIA_PATH) -> bool:
    """True when `url` is a media resource (by default an MMS medium) on the configured Twilio API host."""
    if any(ord(c) < 33 for c in url) or "@" in urlsplit(url).netloc:
        return False
    origin = _origin(url)
    return origin[1] != "" and origin == _origin(api_base) and bool(path.match(urlsplit(url).path))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


async def _redirect_allowed(url: str) -> bool:
    """A redirect target: https, a Twilio media host, and every address it resolves to is public."""
    scheme, host, port = _origin(url)
    parts = urlsplit(url)
    prefix = TWILIO_MEDIA_HOSTS.get(host)
    if scheme != "https" or prefix is None or "@" in parts.netloc or not parts.path.startswith(prefix):
        return False
    if ".." in parts.path or any(ord(c) < 33 for c in url):
        return False
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(_public(str(info[4][0])) for info in infos)


async def download(
    url: str, auth: tuple[str, str] | None, *, api_base: str, timeout: float = 10.0
) -> tuple[bytes, str | None]:
    """Fetches an MMS media URL from Twilio (see the module docstring), at most MAX_BYTES of an image.
    MediaRejected (with one of the fixed reasons) for anything else; nothing is requested from a
    URL that is not Twilio's."""
    if not is_twilio_media_url(url, api_base):
        raise MediaRejected(NOT_FETCHED)
    return await _fetch(url, auth, timeout, _read_image)


async def download_recording(
    url: str, auth: tuple[str, str] | None, *, api_base: str, timeout: float = 10.0
) -> bytes:
    """Fetches a call recording (`RecordingUrl` + `.wav`) from the Twilio API host, under the same
    rules as MMS media: nothing is requested from a URL that is not the account's Recordings resource."""
    if not is_twilio_media_url(url, api_base, _RECORDING_PATH):
        raise MediaRejected(NOT_FETCHED)
    content, _ = await _fetch(url, auth, timeout, _read_recording)
    return content


def store_recording(data_dir: Path, content: bytes, folder: str) -> InboundMedia:
    directory = data_dir / "uploads" / folder
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.wav"
    path = directory / name
    write_private_file(path, content)  # 0600 from creation
    return InboundMedia(storage_path=str(path), content_type="audio/x-wav", size=len(content), filename=name)


async def _fetch(
    url: str,
    auth: tuple[str, str] | None,
    timeout: float,
    read: Callable[[httpx.Response], Awaitable[tuple[bytes, str | None]]],
) -> tuple[bytes, str | None]:
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        current, credentials = url, auth
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", current, auth=credentials) as response:
                if response.is_redirect:
                    target = urljoin(current, response.headers.get("location", ""))
                    if not await _redirect_allowed(target):
                        raise MediaRejected(NOT_FETCHED)
                    current, credentials = target, None  # the account's credentials stay with Twilio
                    continue
                return await read(response)
    raise MediaRejected(NOT_FETCHED)


async def _read_limited(
    response: httpx.Response, types: frozenset[str], limit: int, wrong_type: str
) -> tuple[bytes, str]:
    """The body of a 200 answer of one of `types`, at most `limit` bytes (declared or streamed)."""
    if response.status_code != 200:
        raise MediaRejected(NOT_FETCHED)
    declared_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared_type not in types:
        raise MediaRejected(wrong_type)
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise MediaRejected(TOO_BIG)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise MediaRejected(TOO_BIG)
        chunks.append(chunk)
    return b"".join(chunks), declared_type


async def _read_recording(response: httpx.Response) -> tuple[bytes, str | None]:
    content, declared_type = await _read_limited(response, RECORDING_TYPES, MAX_RECORDING_BYTES, NOT_FETCHED)
    if not (content.startswith(b"RIFF") and content[8:12] == b"WAVE"):
        raise MediaRejected(NOT_FETCHED)
    return content, declared_type


async def _read_image(response: httpx.Response) -> tuple[bytes, str | None]:
    content, declared_type = await _read_limited(response, MMS_TYPES, MAX_BYTES, NOT_A_PHOTO)
    if sniff(content) not in MMS_TYPES:
        raise MediaRejected(NOT_A_PHOTO)
    return content, declared_type
