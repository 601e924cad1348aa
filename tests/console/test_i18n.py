"""Every console text exists in Vietnamese and English, and every key the code uses is in the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

from registry_client.models import CaseKind, CaseStatus, DosesConcerned
from web.console.i18n import MESSAGES, translator
from web.console.sla import SlaState

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "web" / "templates" / "console"
CODE = ROOT / "web" / "console"


def test_both_languages_are_filled_and_use_the_same_placeholders() -> None:
    for key, (vi, en) in MESSAGES.items():
        assert vi.strip() and en.strip(), key
        assert sorted(re.findall(r"{(\w+)}", vi)) == sorted(re.findall(r"{(\w+)}", en)), key


def test_keys_used_by_templates_exist() -> None:
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_0-9]+)'[,)]", template.read_text()))
    dynamic = {
        "role_": ("agent", "site", "admin"),
        "sex_": ("M", "F"),
        "kind_": tuple(k.value for k in CaseKind),
        "status_": tuple(s.value for s in CaseStatus),
        "concerned_": tuple(d.value for d in DosesConcerned),
        "sla_": tuple(s.value for s in SlaState),
        "via_": ("sms", "ussd", "telegram", "console"),
        "msg_status_": ("pending", "sending", "sent", "delivered", "failed", "local", "unreachable"),
        "note_": ("overdue", "still_overdue", "reassigned"),
        "filter_status_": ("open", "closed", "all"),
        "login_": ("bad_credentials", "locked"),
        "error_title_": ("403", "404", "422", "503"),
    }
    used |= {prefix + value for prefix, values in dynamic.items() for value in values}
    assert sorted(k for k in used if k not in MESSAGES) == []


def test_keys_raised_by_the_code_exist() -> None:
    pattern = re.compile(
        r'(?:InputProblem|NoAddress|Denied|UploadProblem|UserError|PageNotFound)\("([a-z_]+)"\)'
        r'|console\.flash, "([a-z_]+)"|return "(bulk_[a-z_]+)"|key = "([a-z_]+)"|problem="([a-z_]+)"'
    )
    used = {
        g
        for source in CODE.glob("*.py")
        for m in pattern.finditer(source.read_text())
        for g in m.groups()
        if g
    }
    assert len(used) > 40
    assert sorted(k for k in used if k not in MESSAGES) == []


def test_translator_formats_and_falls_back() -> None:
    assert (
        translator("en")("link_sent", address="09******67") == "The certificate link was sent to 09******67."
    )
    assert translator("vi")("link_sent", address="09******67").startswith("Đã gửi")
    assert translator("fr")("nav_search") == "Tìm người"  # unknown language: Vietnamese
    assert translator("en")("no_such_key") == "no_such_key"
    assert translator("en")("bulk_summary", approved=1) == "1 of  reports approved."
