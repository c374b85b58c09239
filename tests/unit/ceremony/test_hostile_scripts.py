"""Regression tests for hostile ceremony scripts (issue 10): each is refused by the plan, naming the YAML path,
before anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.errors import PolicyViolation, ScriptError
from ceremony.loader import load_policy, load_profile, load_script
from ceremony.plan import make_plan

ROOT = Path(__file__).resolve().parents[3]


def _step(doc, sid):
    return next(s for s in doc["steps"] if s["id"] == sid)


def _label(value):
    return lambda d: _step(d, "audit-key")["key"].update(label=value)


SCRIPT_ERRORS = [
    # item 1: key labels reach file paths
    (_label("/etc/passwd"), r"steps\[4\]\.key\.label must be letters"),
    (_label("../escaped"), r"steps\[4\]\.key\.label must be letters"),
    (_label(".hidden"), r"steps\[4\]\.key\.label must be letters"),
    (_label("a b"), r"steps\[4\]\.key\.label must be letters"),
    # item 5: scripts that could only fail after keys exist
    (lambda d: _step(d, "entropy").update(output="transcript.md"), r"steps\[2\]\.output 'transcript\.md' is a file"),
    (lambda d: _step(d, "entropy").update(output="audit.log"), r"steps\[2\]\.output 'audit\.log' is a file"),
    (lambda d: _step(d, "entropy").update(output="log.pub"), r"steps\[2\]\.output 'log\.pub' is a file"),
    (lambda d: _step(d, "entropy").update(output="../x.bin"), r"steps\[2\]\.output must be a plain file name"),
    (lambda d: _step(d, "seed").update(bytes=10**8), r"steps\[3\]\.bytes must be between 1 and 4096"),
    (lambda d: d["steps"].insert(3, {"id": "est", "type": "estimate_entropy", "samples_from": "entropy",
                                     "bits_per_symbol": 9}), r"steps\[3\]\.bits_per_symbol must be between 1 and 8"),
    (lambda d: _step(d, "health").update(samples=float("nan")), r"steps\[1\]\.samples must be an integer"),
    (lambda d: _step(d, "health").update(samples=True), r"steps\[1\]\.samples must be an integer"),
    # item 5: duplicate key labels (their output files collide)
    (lambda d: d["steps"].insert(5, {"id": "key2", "type": "generate_keypair",
                                     "key": {"label": "audit-log-key", "type": "ec", "curve": "P-256"}}),
     r"steps\[5\]\.output 'audit-log-key\.provenance\.json' is also written by steps\[4\]"),
]


@pytest.mark.parametrize("change,phrase", SCRIPT_ERRORS)
def test_hostile_script_is_refused_with_its_path(ws, change, phrase):
    path = ws.derive("audit-key.yaml", "hostile.yaml", change)
    with pytest.raises(ScriptError, match=phrase) as exc:
        load_script(path)
    assert str(path) in str(exc.value)


def _plan(path):
    s = load_script(path)
    return make_plan(s, load_policy(s.policy), load_profile(s.profiles, "filekey"))


PLAN_VIOLATIONS = [
    (lambda d: _step(d, "export").update(keys=["entropy"]), "keys[0] must name an earlier generate_keypair step"),
    (lambda d: d["steps"].insert(3, {"id": "est", "type": "estimate_entropy", "samples_from": "health"}),
     "samples_from must name an earlier collect_entropy step"),
]


@pytest.mark.parametrize("change,phrase", PLAN_VIOLATIONS)
def test_plan_refuses_scripts_that_could_only_fail_later(ws, change, phrase):
    with pytest.raises(PolicyViolation) as exc:
        _plan(ws.derive("audit-key.yaml", "later.yaml", change))
    assert any(phrase in v for v in exc.value.violations), exc.value.violations


@pytest.mark.parametrize("field,value", [("max_estimate_shortfall", float("nan")),
                                         ("min_claimed_min_entropy", float("nan")),
                                         ("max_alpha_log2", float("nan")), ("min_claimed_min_entropy", float("inf"))])
def test_policy_numbers_must_be_finite(ws, field, value):
    """Item 3: NaN passes every range check; a policy threshold must be a finite number."""
    import yaml
    pol = ws.dir / "policies" / "rehearsal.yaml"
    doc = yaml.safe_load(pol.read_text())
    assert field in doc["entropy"]
    doc["entropy"][field] = value
    pol.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScriptError, match=f"entropy.{field} must be a finite number"):
        load_policy(pol)


@pytest.mark.parametrize("change,phrase", [
    (lambda log: log.update(key="not+a+key"), r"transparency_log\.key is not a note verifier key"),
    (lambda log: log.update(key="../usb/fwlog/missing.pub"), r"transparency_log\.key cannot read key file"),
    (lambda log: log.update(witnesses=["x+y"]), r"witnesses\[0\] is not a note verifier key"),
    (lambda log: log.update(quorum=5), r"quorum is 5 but only 1 witness keys"),
    (lambda log: log.update(origin=7), r"transparency_log\.origin must be"),
])
def test_firmware_log_policy_is_checked_when_loaded(ws, change, phrase):
    """A wrong firmware-log key or quorum is a policy error naming the field, before any ceremony starts (it used
    to surface only when attest_device ran)."""
    import yaml
    pol = ws.dir / "policies" / "rehearsal.yaml"
    doc = yaml.safe_load(pol.read_text())
    change(doc["attestation"]["firmware"]["transparency_log"])
    pol.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScriptError, match=phrase):
        load_policy(pol)


@pytest.mark.parametrize("where, value", [
    ("subject", "Root \u202eAC"), ("subject", "Zero\u200bWidth"), ("role", "Olga\u2028Operator"),
    ("description", "trusted\u202d"),
])
def test_bidi_and_invisible_characters_never_reach_certificates_or_papers(ws, where, value):
    """Issue 20 (low): a subject or name with U+202E (right-to-left override), a zero-width space or a line
    separator would read one way on paper and say another in the certificate. Refused, naming the YAML path."""
    from ceremony.errors import ScriptError

    def change(doc):
        if where == "subject":
            next(s for s in doc["steps"] if s["type"] == "self_signed_root")["subject"]["CN"] = value
        elif where == "role":
            doc["roles"]["operator"] = value
        else:
            doc["description"] = value
    path = ws.derive("root-ca.yaml", "bidi.yaml", change)
    with pytest.raises(ScriptError, match="U\\+(202E|200B|2028|202D)"):
        load_script(path)


def test_the_production_template_refuses_to_run_until_it_names_what_it_trusts(ws):
    """Issue 23: policies/default.yaml trusted TEST-ONLY roots and allowed the simulator while saying it suited
    production roots. It is policies/rehearsal.yaml now, and policies/production-template.yaml trusts nothing:
    the plan refuses it, naming the two keys to fill in, until the operator names a root and the firmware."""
    import shutil
    shutil.copy(ROOT / "policies" / "production-template.yaml", ws.dir / "policies" / "production-template.yaml")
    script = ws.derive("audit-key.yaml", "prod.yaml", lambda d: d.update(policy="../policies/production-template.yaml"))
    with pytest.raises(PolicyViolation) as exc:
        _plan(script)
    text = "\n".join(exc.value.violations)
    assert "trusts no manufacturer root" in text and "attestation.manufacturer_roots" in text
    assert "accepts no firmware" in text and "attestation.firmware.transparency_log" in text
    pol = ws.dir / "policies" / "production-template.yaml"
    named = pol.read_text().replace("manufacturer_roots: []", "manufacturer_roots: [../.softhsm/attestation/"
                                    "test-manufacturer-ca.pem]").replace("firmware: {}", "firmware: {allowed_sha256: "
                                    "[" + "ab" * 32 + "]}")
    pol.write_text(named)
    with pytest.raises(PolicyViolation) as exc:
        _plan(script)
    assert not any("trusts no" in v or "accepts no firmware" in v for v in exc.value.violations)
    assert any("forbids the simulator" in v for v in exc.value.violations)  # the template still forbids it
    rehearsal = (ROOT / "policies" / "rehearsal.yaml").read_text()
    assert rehearsal.startswith("# Rehearsal policy") and "never use it for keys that matter" in rehearsal


def test_a_step_violation_names_file_line_column_and_the_steps_id(ws):
    """Issue 23: plan violations said `steps[5]` while the plan prints `6. [root-key]`; they now name the script,
    line and column, and the step's id beside its index."""
    path = ws.derive("audit-key.yaml", "named.yaml", lambda d: _step(d, "export").update(keys=["entropy"]))
    with pytest.raises(PolicyViolation) as exc:
        _plan(path)
    line = next(v for v in exc.value.violations if "must name an earlier generate_keypair step" in v)
    import re
    m = re.match(r"named\.yaml:(\d+):(\d+): steps\[(\d+)\] \(export\)\.keys", line)
    assert m, line
    text = path.read_text().splitlines()
    assert "entropy" in text[int(m.group(1)) - 1]  # the line it names holds the offending reference
