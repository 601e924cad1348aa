"""Password hashing for console users (argon2id via argon2-cffi, RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8


class _Hashing:
    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher
        self._dummy: str | None = None

    @property
    def dummy(self) -> str:
        """Verified when the user does not exist, so an unknown name costs as long as a wrong password."""
        if self._dummy is None:
            self._dummy = self.hasher.hash("not-a-real-password-0")
        return self._dummy


_hashing = _Hashing(PasswordHasher())


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Replaces the hasher (tests use cheaper argon2 parameters); returns the previous one."""
    global _hashing
    previous = _hashing.hasher
    _hashing = _Hashing(hasher)
    return previous


def hash_password(password: str) -> str:
    return _hashing.hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hashing.hasher.verify(password_hash or _hashing.dummy, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hashing.hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """A reason the password is not acceptable (i18n key), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return "password_too_short"
    if password.strip() != password or not password.strip():
        return "password_whitespace"
    return None
