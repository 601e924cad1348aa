"""Fixtures of the fuzz tests."""

from __future__ import annotations

from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
