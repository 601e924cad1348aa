"""Errors of the registry client, as data. Translated to replies or HTTP at the edge."""

from __future__ import annotations


class RegistryError(Exception):
    retryable: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class RegistryUnavailable(RegistryError):
    """The backend did not answer (timeout, connection refused, 5xx, open breaker)."""

    retryable = True


class RecordNotFound(RegistryError):
    """No person, case or site with that key."""


class InvalidRequest(RegistryError):
    """The backend refused the request as malformed (the message says why)."""


class Conflict(RegistryError):
    """The write conflicts with stored data (e.g. a different dose already recorded under that number)."""
