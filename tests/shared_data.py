"""Where the team's shared conformance data is: `../shared` beside the checkout.

`VAXCHANNEL_SHARED_DIR` overrides it. The data is read in place, never copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    os.environ.get("VAXCHANNEL_SHARED_DIR"),
    str(Path(__file__).resolve().parents[2] / "shared"),
]


def shared_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate and (Path(candidate) / "conformance").is_dir():
            return Path(candidate)
    raise FileNotFoundError(
        "the shared conformance data (../shared/conformance beside the checkout) is missing; "
        "set VAXCHANNEL_SHARED_DIR"
    )


CONFORMANCE = shared_dir() / "conformance"
