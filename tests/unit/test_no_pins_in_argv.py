"""Issue 10 item 14: no script we ship passes a PIN on a command line, where every user can read it in
/proc/*/cmdline. PINs come from files (mode 600) or the environment, and reach tools as pin-source=file:."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN_ARGS = re.compile(r"--(so-)?pin\b|pin-value=|--login\s+--pin|-p\s+\$\w*PIN")


def test_shipped_scripts_never_put_a_pin_in_argv():
    offenders = []
    for path in sorted([*ROOT.glob("scripts/*"), ROOT / "Makefile", *ROOT.glob("bench/*.sh")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#") and PIN_ARGS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_the_demo_signs_with_a_pin_file():
    text = (ROOT / "scripts" / "demo_ceremony.sh").read_text()
    assert "pin-source=file:" in text and "pin-value" not in text
