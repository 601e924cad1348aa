"""Fixtures of the abuse tests (shared with tests/faults: demo databases, the app over ASGI)."""

from __future__ import annotations

from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.faults.conftest import demo_db, pg_demo  # noqa: F401 - shared fixtures
