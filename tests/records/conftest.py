"""The records tests run on the console harness: the real app, demo identities, every role."""

from tests.console.conftest import cheap_argon2, console  # noqa: F401  (fixtures)
