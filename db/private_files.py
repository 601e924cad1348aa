"""Files that only this service's user may read: generated secrets, the data folder, uploads.

Every file here is created with its final mode (0600) by `os.open(..., O_CREAT | O_EXCL, 0o600)`,
so it is never readable by others, not even between a write and a chmod. A generated secret is
written whole to a temporary name, fsynced, then hard-linked to its name: a reader sees either
no file or the complete one, and when two workers start at once exactly one secret wins (the
loser's `link` fails with FileExistsError and it reads the winner's).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PROCESS_UMASK = 0o077


class EmptySecretFile(RuntimeError):
    """A secret file exists but holds nothing: refusing to run with an empty secret."""


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def restrict_umask() -> None:
    """Files and folders this process creates from now on are private unless made otherwise
    (SQLite's database, -wal and -shm files, uploads, logs under DATA_DIR)."""
    os.umask(PROCESS_UMASK)


def ensure_private_dir(path: Path) -> Path:
    """Creates `path` (and missing parents) as 0700; tightens it if it exists and is looser."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(PRIVATE_DIR)
        log.warning("data folder %s was readable by others (mode %03o): now %03o", path, mode, PRIVATE_DIR)
    return path


def protect_data_dir(data_dir: Path) -> Path:
    """Called at start: private umask for the process, DATA_DIR 0700."""
    restrict_umask()
    return ensure_private_dir(data_dir)


def _tighten_file(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(PRIVATE_FILE)
        log.warning("%s was readable by others (mode %03o): now %03o", path, mode, PRIVATE_FILE)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(directory: Path, name: str, data: bytes) -> Path:
    """A complete, fsynced, 0600 file under a unique temporary name next to its target."""
    tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private_file(path: Path, data: bytes) -> Path:
    """Creates a new 0600 file (its folder 0700 if created here). Refuses to overwrite."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def write_secret_file(path: Path, value: str) -> None:
    """Writes (or atomically replaces) a secret file: 0600 from creation, fsynced."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, value.encode())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_secret_file(path: Path) -> str:
    """The secret in `path` (tightened to 0600 first if it was looser)."""
    _tighten_file(path)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise EmptySecretFile(f"{path} is empty: delete it to generate a new secret, or set the value")
    return value


def read_or_create_secret(path: Path, make: Callable[[], str] = new_secret) -> str:
    """The secret stored in `path`, generated once on first use. Safe when several processes
    start at the same moment: all of them end up with the same secret."""
    if path.exists():
        return read_secret_file(path)
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, make().encode())
    try:
        os.link(tmp, path)  # fails if another process got there first: theirs is the secret
        _fsync_dir(path.parent)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_secret_file(path)
