"""docs/runbooks (issue 22): one runbook per alert, each alert's runbook_url pointing at it, and every signal a
runbook names exists: the metrics the exporter defines (or the recording rules), the alerts in the rules, the log
events qrngd emits, the CKR codes of PKCS#11, the `qrng` commands. Runbooks cite nothing outside the repository.
(That each signal appears for its fault under injection is the game day's to check.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOKS = ROOT / "docs" / "runbooks"
RULES = yaml.safe_load((ROOT / "contrib" / "prometheus" / "qrng-rules.yml").read_text())
ALERTS = {r["alert"]: r for g in RULES["groups"] for r in g["rules"] if "alert" in r}
RECORDED = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
SECTIONS = ("## Symptom", "## Signals", "## Immediate action", "## Reset a failed source", "## Where the daemon logs",
            "## Confirm recovery", "## Escalate when", "## Key rotation decision")


def _exported_metrics() -> set[str]:
    src = "".join(p.read_text() for p in (ROOT / "qrngd").glob("*.py"))
    return set(re.findall(r'"(qrng_[a-z_]+)"', src))


def _events() -> set[str]:
    src = "".join(p.read_text() for p in (ROOT / "qrngd").glob("*.py"))
    return set(re.findall(r'event\("([a-z_]+\.[a-z_]+)"', src)) | set(re.findall(r'"(source\.[a-z]+)"', src))


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_has_its_runbook(alert):
    assert ALERTS[alert]["annotations"]["runbook_url"] == f"docs/runbooks/{alert}.md"
    text = (BOOKS / f"{alert}.md").read_text()
    assert all(s in text for s in SECTIONS), [s for s in SECTIONS if s not in text]
    assert "journalctl -u qrngd" in text and "http" not in text  # nothing outside the repository


@pytest.mark.parametrize("book", sorted(p.name for p in BOOKS.glob("Qrng*.md")))
def test_every_signal_a_runbook_names_exists(book):
    text = (BOOKS / book).read_text()
    signals = text[text.index("## Signals"):text.index("## Immediate action")]
    metrics = set(re.findall(r"`(qrng_[a-z_]+)`", signals)) | set(re.findall(r"metrics? `(qrng_[a-z_]+)`", text))
    exported = {m.removesuffix("_total") for m in _exported_metrics()}
    assert {m.removesuffix("_total") for m in metrics} <= exported, metrics - exported
    assert set(re.findall(r"recording rule `([a-z_:0-9]+)`", text)) <= RECORDED
    assert set(re.findall(r"alert `(\w+)`", text)) <= set(ALERTS)
    assert set(re.findall(r"log event `([a-z_.]+)`", text)) <= _events()
    from qrng_pkcs11 import ckdefs as ck
    assert set(re.findall(r"`(CKR_[A-Z_]+)`", text)) <= set(ck.CKR_NAMES.values())
    import qrng_cli
    commands = set(qrng_cli.build_parser()._subparsers._group_actions[0].choices)
    assert {c for c in re.findall(r"`qrng ([a-z]+)", text)} <= commands


def test_the_index_lists_every_runbook():
    index = (BOOKS / "README.md").read_text()
    assert all(f"({p.name})" in index for p in BOOKS.glob("Qrng*.md"))
    assert {p.stem for p in BOOKS.glob("Qrng*.md")} == set(ALERTS)
