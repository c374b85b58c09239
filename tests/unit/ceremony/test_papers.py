"""Ceremony papers (issue 11): the run sheet is the plan on paper, the transcript is the verified log on paper,
the auditor's report lists each check. Pure models and HTML (jinja2, matplotlib SVG); PDF is in tests/system."""

from __future__ import annotations

import hashlib
import json
import re

import html5lib
import numpy as np
import pytest

from ceremony.papers import pgp_words
from ceremony.papers.charts import estimator_svg, health_svg
from ceremony.papers.record import EstimatorChart, HealthChart, transcript
from ceremony.papers.render import PaperError, check_format, render_html
from ceremony.papers.sheet import run_sheet
from ceremony.runner import Ceremony
from ceremony.steps import REGISTRY
from ceremony.steps.base import PHASES, _default_record, _default_sheet
from ceremony.verify import HOW, verify_folder
from transparency.note import Verifier
from transparency.verify import parse_log, verify_log

from .conftest import make_plan_workspace
from .fake_hsm import FakeHsm
from .test_runner import SCRIPT, _plan, _verifiers


def _text(html: str) -> str:
    """The text a reader sees; the HTML must parse without a single error (html5lib, strict)."""
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)
    for tag in ("style", "script"):
        for el in tree.iter(tag):
            el.text = ""
    return " ".join(" ".join(tree.itertext()).split())


RAW_SYNTAX = [re.compile(p) for p in (r"\*\*", r"`", r"\{\"", r"\":", r"^#", r"\|---")]


def _no_raw_syntax(text: str) -> None:
    for pattern in RAW_SYNTAX:
        assert not pattern.search(text), f"raw Markdown or JSON on paper: {pattern.pattern}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_step_type_renders_its_own_lines(name):
    kind = REGISTRY[name]
    assert kind.phase in PHASES
    assert kind.sheet is not _default_sheet and kind.record is not _default_record


def test_run_sheet_is_the_plan_on_paper(ws):
    plan = _plan(ws)
    script_bytes, policy_bytes = plan.script.path.read_bytes(), plan.policy.path.read_bytes()
    sheet = run_sheet(plan, script_bytes, policy_bytes)
    rows = [s for page in sheet.pages for s in page.steps]
    assert [s.id for s in rows] == [s["id"] for s in SCRIPT["steps"]]
    assert [s.number for s in rows] == list(range(1, len(rows) + 1))
    assert [p.phase for p in sheet.pages] == list(PHASES)  # consecutive steps of a phase share a page
    digest = hashlib.sha256(script_bytes).digest()
    values = {f.label: f.value for f in sheet.digests}
    assert values["Script SHA-256"] == digest.hex() and values["Script PGP words"] == pgp_words(digest)
    assert values["Policy SHA-256"] == hashlib.sha256(policy_bytes).hexdigest()
    assert sheet.initials == ("Operator", "carol", "dave")
    attest = next(s for s in rows if s.type == "attest_device")
    assert {f.label: f.value for f in attest.row.expect}["Device serial"] == "SIM-0001"
    health = next(s for s in rows if s.type == "health_check")
    assert "cutoff" in " ".join(f.label for f in health.row.expect).lower()
    text = _text(render_html(sheet))
    _no_raw_syntax(text)
    for needle in (digest.hex(), pgp_words(digest), "Operator (Olga Operator)".lower(), "SIMULATOR", "Sign-off"):
        assert needle.lower() in text.lower()


def test_run_sheet_follows_the_script_bytes(ws):
    """A changed script (a comment) changes the digest on the cover: people can tell versions apart."""
    plan = _plan(ws)
    a = run_sheet(plan, plan.script.path.read_bytes(), plan.policy.path.read_bytes())
    b = run_sheet(plan, plan.script.path.read_bytes() + b"# changed\n", plan.policy.path.read_bytes())
    assert a.digests[0] != b.digests[0] and a.pages == b.pages


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One completed ceremony on the FakeHsm, shared by the tests that only read it."""
    ws = make_plan_workspace(tmp_path_factory.mktemp("papers"))
    plan = _plan(ws)
    return ws, Ceremony(plan, FakeHsm(), papers=(".html",)).run().output


def test_transcript_is_the_verified_log_on_paper(done):
    ws, out = done
    html = (out / "transcript.html").read_text()
    text = _text(html)
    _no_raw_syntax(text)
    data = (out / "audit.log").read_bytes()
    entries = [json.loads(x) for x in parse_log(data).entries]
    started = entries[0]["data"]
    key = next(e["data"] for e in entries if e["event"] == "key.generated")
    cert = next(e["data"] for e in entries if e["event"] == "certificate.issued")
    v = verify_log(data, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))
    for needle in (started["script_sha256"], key["public_key_sha256"], key["key_id"], cert["serial"],
                   cert["fingerprint_sha256"], pgp_words(v.latest.root), "witness.example/carol", "SIMULATOR"):
        assert needle in text, needle
    assert v.latest.size == len(entries)  # the cover's checkpoint is the final one, with the cosignatures
    assert set(v.cosigner_names) == {"witness.example/carol", "witness.example/dave"}
    assert "cosigned the final checkpoint" in text
    # each step has its section, in order
    positions = [text.index(f"{i}. {s['id']}") for i, s in enumerate(SCRIPT["steps"], 1)]
    assert positions == sorted(positions)


def test_health_statistics_on_paper_come_from_the_kept_samples(done):
    from qrng.health import statistics
    _, out = done
    entries = [json.loads(x) for x in parse_log((out / "audit.log").read_bytes()).entries]
    logged = next(e["data"] for e in entries if e["event"] == "health.statistics")
    samples = np.frombuffer((out / "entropy-raw.bin").read_bytes(), dtype=np.uint8)
    again = statistics(samples, logged["window"])
    assert [list(x) for x in again.run_lengths] == logged["run_lengths"]
    assert logged["max_run"] < logged["rct_cutoff"] and logged["max_apt"] < logged["apt_cutoff"]


def test_transcript_rendering_is_deterministic(done):
    """Same log, same bytes: a transcript can be rendered again and compared (no clock, fixed SVG ids)."""
    ws, out = done
    data = (out / "audit.log").read_bytes()
    v = verify_log(data, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))
    from qrng import __version__
    assert render_html(transcript(data, v), __version__) == render_html(transcript(data, v), __version__) == \
        (out / "transcript.html").read_text()


def test_a_failed_run_has_a_transcript_saying_where_it_stopped(ws):
    from ceremony.errors import StepFailed

    from .test_runner import Flaky
    plan = _plan(ws)
    with pytest.raises(StepFailed):
        Ceremony(plan, Flaky(), papers=(".html",)).run()
    text = _text((plan.script.output / "transcript.html").read_text())
    assert "FAILED" in text and "token went away" in text


def test_charts_are_svg_with_the_values_people_compare():
    est = EstimatorChart((("Compression (bit string x8)", 4.9), ("t-Tuple", 6.4)), 4.0, 4.9, "estimate")
    svg = estimator_svg(est)
    assert svg.startswith("<svg") and "claimed 4 bits/sample" in svg and "assessed 4.900" in svg
    h = HealthChart(((1, 900), (2, 90), (3, 9)), ((3, 10), (5, 2)), 6, 62, 512, 999, "entropy")
    svg = health_svg(h)
    assert "cutoff 6" in svg and "cutoff 62" in svg and "observed maximum 3" in svg and "observed maximum 5" in svg
    assert svg == health_svg(h)


def test_verify_records_each_check_in_order_and_stops_at_a_failure(ws):
    from ceremony.errors import StepFailed
    out = Ceremony(_plan(ws), FakeHsm()).run().output  # its own: this test changes an output
    key = Verifier.parse((out / "log.pub").read_text())
    checks: list = []
    files: list = []
    verify_folder(out, [key], _verifiers(ws), record=checks.append, seen=lambda n, d: files.append(n))
    assert [c.name for c in checks] == list(HOW) and {c.result for c in checks if c.required} == {"passed"}
    assert [(c.name, c.result, c.required) for c in checks if c.result != "passed"] == [
        ("Papers", "not checked", False)]  # this run wrote no transcript
    assert "root.pem" in files and all(c.how for c in checks)
    (out / "root.pem").write_bytes(b"changed")
    checks.clear()
    with pytest.raises(StepFailed):
        verify_folder(out, [key], _verifiers(ws), record=checks.append)
    assert [c.name for c in checks] == list(HOW)[:4]  # the outputs check failed; nothing after it ran


@pytest.mark.parametrize("name", ["sheet.txt", "sheet", "sheet.PDFX"])
def test_paper_format_follows_the_suffix(name, tmp_path):
    with pytest.raises(PaperError, match="must end in .html or .pdf"):
        check_format(tmp_path / name, "--sheet")
    assert check_format(tmp_path / "x.PDF", "--sheet") == ".pdf"


def test_hostile_text_is_shown_not_obeyed(ws):
    """Script text reaches paper escaped: a description with markup is printed as text, never run as HTML."""
    import dataclasses
    plan = _plan(ws)
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> & "quotes"'
    plan = dataclasses.replace(plan, script=dataclasses.replace(plan.script, description=hostile))
    html = render_html(run_sheet(plan, b"", b""))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert hostile in _text(html)


def test_a_paper_that_cannot_be_rendered_never_fails_a_completed_ceremony(ws, monkeypatch):
    """Regression: an exception while rendering the transcript after the last step used to escape run() and turn a
    completed ceremony into an error exit. It is reported, and a later run writes the missing paper."""
    import ceremony.papers.render as render
    plan = _plan(ws)
    said: list[str] = []

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded (injected)")
    monkeypatch.setattr(render, "render", broken)
    result = Ceremony(plan, FakeHsm(), said.append, papers=(".html",)).run()
    assert result.steps_run and not (result.output / "transcript.html").exists()
    assert any("transcript not written" in m and "renderer exploded" in m for m in said)
    monkeypatch.undo()
    again = Ceremony(plan, FakeHsm(), papers=(".html",)).run()
    assert again.steps_run == [] and (result.output / "transcript.html").exists()


def test_auditor_report_html_parses_strictly_and_says_what_failed(done):
    """The report's HTML, passed and failed, parses without an error (html5lib strict), as the papers do."""
    from ceremony.papers.report import AuditReport, Check
    from ceremony.papers.vocabulary import Fact
    ok = AuditReport("unit-2026", True, "verified", (Fact("Folder", "/x", digest=True),), None,
                     (Check("Log records and hash chain", "RFC 9162 2.1.1", "passed", "9 entries"),),
                     (("root.pem", "ab" * 32, "matches"),))
    text = _text(render_html(ok))
    assert "VERIFIED" in text and "root.pem" in text and "SIMULATOR" in text
    bad = AuditReport("unit-2026", False, "failed", (), None,
                      (Check("Outputs against their logged digests", "SHA-256", "failed", "root.pem <changed>"),), ())
    text = _text(render_html(bad))
    assert "VERIFICATION FAILED" in text and "root.pem <changed>" in text
