"""Imports point down only (ARCHITECTURE.md): a plain AST check over every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level names it must never import
FORBIDDEN = {
    "conversations": {
        "telegram",
        "twilio",
        "fastapi",
        "starlette",
        "bot",
        "sms_gateway",
        "web",
        "app",
        "main",
    },
    "registry_client": {
        "conversations",
        "bot",
        "sms_gateway",
        "web",
        "app",
        "main",
        "telegram",
        "twilio",
        "fastapi",
    },
    "certificates": {
        "registry_client",
        "conversations",
        "bot",
        "sms_gateway",
        "web",
        "app",
        "main",
        "fastapi",
    },
    "outbox": {
        "registry_client",
        "conversations",
        "bot",
        "sms_gateway",
        "web",
        "certificates",
        "app",
        "main",
    },
    "db": {
        "registry_client",
        "conversations",
        "bot",
        "sms_gateway",
        "web",
        "certificates",
        "outbox",
        "app",
        "main",
    },
    "sms_gateway": {"bot", "web", "app", "main"},
    "bot": {"web", "app", "main", "sms_gateway"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_down_only() -> None:
    violations = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            bad = imported_top_levels(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert violations == []


def test_the_check_itself_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import telegram.ext\nfrom fastapi import APIRouter\nfrom . import local\n")
    assert imported_top_levels(sample) == {"telegram", "fastapi"}
