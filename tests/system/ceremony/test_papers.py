"""Ceremony papers of a real ceremony on SoftHSM2 (issue 11), read the way people and auditors meet them: the
run sheet, transcript and auditor's report as PDF (WeasyPrint) read back with poppler's pdftotext, and the
transcript as a page in headless Chromium. Every value checked on paper is taken from the verified log."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ceremony.papers import pgp_words
from transparency.note import Verifier
from transparency.verify import parse_log, verify_log

from .conftest import Workspace, make_workspace

CHROMIUM = "/usr/bin/chromium"
RAW = [re.compile(p) for p in (r"\*\*", r"`", r"\{\"", r"\":\s", r"^#+ ", r"\|---")]


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    """The demo's two ceremonies in a workspace of their own, with its run sheet, transcript and report."""
    ws = make_workspace(tmp_path_factory.mktemp("papers"))
    sheet = ws.dir / "run-sheet.pdf"
    r = ws.qrng("ceremony", "plan", str(ws.script("root-ca.yaml")), "--profile", "rehearsal", "--sheet", str(sheet))
    assert r.returncode == 0 and f"run sheet: {sheet}" in r.stdout, r.stderr
    for script, profile in (("audit-key.yaml", "rehearsal-bootstrap"), ("root-ca.yaml", "rehearsal")):
        r = ws.qrng("ceremony", "run", str(ws.script(script)), "--profile", profile)
        assert r.returncode == 0, r.stderr
    out = ws.dir / "out" / "root-ca-2026"
    r = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out), "--report", str(ws.dir / "report.pdf"))
    assert r.returncode == 0 and "auditor's report:" in r.stdout, r.stderr
    return ws, out


def pdftotext(path: Path) -> str:
    assert path.read_bytes().startswith(b"%PDF-")
    r = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return r.stdout


def flat(text: str) -> str:
    """Text with line breaks and hyphenless wraps joined: a digest wrapped across lines is found again."""
    return re.sub(r"\s+", "", text)


def no_raw_syntax(text: str) -> None:
    for line in text.splitlines():
        for pattern in RAW:
            assert not pattern.search(line.strip()), f"raw Markdown or JSON on paper: {line.strip()!r}"


def log_facts(ws: Workspace, out: Path) -> dict[str, object]:
    data = (out / "audit.log").read_bytes()
    entries = [json.loads(x) for x in parse_log(data).entries]
    v = verify_log(data, [Verifier.parse((out / "log.pub").read_text())],
                   [Verifier.parse((ws.dir / "w" / f"{w}.key.pub").read_text()) for w in ("carol", "dave")], 2)
    return {"script_sha256": entries[0]["data"]["script_sha256"],
            "keys": [e["data"]["public_key_sha256"] for e in entries if e["event"] == "key.generated"],
            "serials": [e["data"]["serial"] for e in entries if e["event"] == "certificate.issued"],
            "words": pgp_words(v.latest.root), "size": v.latest.size}


def test_run_sheet_pdf(ceremony):
    ws, _ = ceremony
    text = pdftotext(ws.dir / "run-sheet.pdf")
    no_raw_syntax(text)
    digest = hashlib.sha256(ws.script("root-ca.yaml").read_bytes()).digest()
    assert digest.hex() in flat(text) and flat(pgp_words(digest)) in flat(text)
    for needle in ("Part 1 of 3", "Part 3 of 3", "Sign-off", "EMU-0001", "SIMULATOR REHEARSAL", "Operator", "carol"):
        assert needle in text, needle
    steps = ("attest", "health", "entropy", "estimate", "seed", "root-key", "root-cert", "int-key", "int-csr",
             "int-cert", "crl", "export", "verify", "signoff")
    positions = [re.search(rf"^{re.escape(s)} \(", text, re.M).start() for s in steps]  # type: ignore[union-attr]
    assert positions == sorted(positions)  # one row per step, in the script's order


def test_transcript_pdf(ceremony):
    ws, out = ceremony
    text = pdftotext(out / "transcript.pdf")
    no_raw_syntax(text)
    facts = log_facts(ws, out)
    body = flat(text)
    assert facts["script_sha256"] in body and flat(str(facts["words"])) in body
    for fp in facts["keys"]:  # type: ignore[attr-defined]
        assert fp in body
    for serial in facts["serials"]:  # type: ignore[attr-defined]
        assert serial in body
    for needle in ("SIMULATOR", "Final checkpoint", "Outcomes", "SP 800-90B estimators", "Sign-off",
                   "Repetition count test (4.4.1)", "observed maximum"):  # chart text is text in the PDF (vector)
        assert needle in text, needle
    assert f"{facts['size']} entries" in text
    # issue 12: the source is the USB EMULATOR; it attested over USB, its firmware proven in a transparency log
    for needle in ("EMU-0001", "Over USB", "firmware transparency log", "EMULATOR"):
        assert needle in text, needle


def test_auditor_report_pdf(ceremony):
    ws, out = ceremony
    text = pdftotext(ws.dir / "report.pdf")
    no_raw_syntax(text)
    facts = log_facts(ws, out)
    assert "VERIFIED" in text and flat(str(facts["words"])) in flat(text)
    for check in ("Log records and hash chain", "Signed checkpoints and consistency", "Witness cosignatures",
                  "Outputs against their logged digests", "Extractions re-run", "Provenance statements",
                  "RFC 9162", "root-ca.pem"):
        assert flat(check) in flat(text), check  # a narrow column wraps a name across lines
    assert text.count("passed") >= 6


def test_a_failed_verification_still_writes_its_report(ceremony, tmp_path):
    ws, out = ceremony
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "issuing-ca.pem").write_text("not the certificate")
    r = ws.qrng("ceremony", "verify", str(copy), *ws.auditor_args(copy), "--report", str(tmp_path / "r.html"))
    assert r.returncode == 1 and "issuing-ca.pem does not match" in r.stderr
    html = (tmp_path / "r.html").read_text()
    assert "VERIFICATION FAILED" in html and "FAILED" in html and "Extractions re-run" not in html


def test_bad_report_path_is_refused_before_any_work(ceremony, tmp_path):
    ws, out = ceremony
    r = ws.qrng("ceremony", "verify", str(out), "--report", str(tmp_path / "report.docx"))
    assert r.returncode == 2 and "must end in .html or .pdf" in r.stderr and "Traceback" not in r.stderr
    r = ws.qrng("ceremony", "verify", str(out), "--report", str(tmp_path / "missing" / "r.pdf"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    (tmp_path / "kept.pdf").write_bytes(b"mine")
    r = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out), "--report", str(tmp_path / "kept.pdf"))
    assert r.returncode == 2 and (tmp_path / "kept.pdf").read_bytes() == b"mine"  # never overwritten unasked


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by make provision")
def test_transcript_in_headless_chromium(ceremony, tmp_path):
    """The page renders (a screenshot that is not blank) and no element is wider than an A4 page (794 CSS px)."""
    from playwright.sync_api import sync_playwright
    _, out = ceremony
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 794, "height": 1123})
            page.goto((out / "transcript.html").as_uri())
            wide = page.evaluate("""() => {
                const w = document.documentElement.clientWidth;
                return [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > w + 0.5)
                    .map(e => e.tagName + ' ' + (e.textContent || '').slice(0, 40));
            }""")
            assert wide == [], f"wider than the page: {wide[:5]}"
            assert page.evaluate("document.documentElement.scrollWidth") <= 794
            shot = tmp_path / "transcript.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    from PIL import Image
    img = Image.open(shot).convert("L")
    assert img.size == (794, 1123)
    histogram = img.histogram()
    assert sum(histogram[:128]) > 0.005 * img.size[0] * img.size[1]  # text was drawn, not a blank page
