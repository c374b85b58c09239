"""The ceremony runner and its steps on the in-memory FakeHsm: a whole ceremony, a rerun that does nothing, a
failure that is logged and resumed without a second key, and a folder an auditor verifies. No SoftHSM2."""

from __future__ import annotations

import json

import pytest

from ceremony.errors import StepFailed
from ceremony.loader import load_policy, load_profile, load_script
from ceremony.plan import make_plan
from ceremony.runner import Ceremony
from ceremony.verify import verify_folder
from transparency.note import Verifier

from .fake_hsm import FakeHsm

SCRIPT = {
    "version": 1, "ceremony": "unit-2026", "policy": "../policies/rehearsal.yaml", "profiles": "profiles.yaml",
    "output": "../out/unit-2026", "entropy_config": "entropy-unit.yaml",
    "roles": {"operator": "Olga Operator"}, "witnesses": ["witness.example/carol", "witness.example/dave"],
    "steps": [
        {"id": "attest", "type": "attest_device"},
        {"id": "health", "type": "health_check", "samples": 70000},
        {"id": "entropy", "type": "collect_entropy", "samples": 65536, "output": "entropy-raw.bin"},
        {"id": "seed", "type": "seed_hsm", "bytes": 48},
        {"id": "root-key", "type": "generate_keypair", "key": {"label": "unit-root", "type": "ec", "curve": "P-256"}},
        {"id": "root-cert", "type": "self_signed_root", "key": "root-key", "subject": {"CN": "Unit Root", "C": "DE"},
         "validity_days": 3650, "profile": "root_ca", "output": "root.pem"},
        {"id": "export", "type": "export_public", "keys": ["root-key"]},
        {"id": "signoff", "type": "witness_signoff"},
    ],
}


def _entropy(doc):
    doc["extractor"] = {"type": "sha256"}  # no native kernel in the unit layer


class Flaky(FakeHsm):
    """A FAKE HSM whose first signature fails, as a token that drops off mid-step would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_sign = True

    def sign(self, spec, key_id, data, hash_name=""):
        if self.fail_next_sign:
            self.fail_next_sign = False
            from ceremony.errors import HsmError
            raise HsmError("token went away (injected by the test)")
        return super().sign(spec, key_id, data, hash_name)


def _plan(ws):
    ws.derive("entropy-simulator.yaml", "entropy-unit.yaml", _entropy)
    path = ws.script("unit.yaml")
    import yaml
    path.write_text(yaml.safe_dump(SCRIPT, sort_keys=False))
    s = load_script(path)
    return make_plan(s, load_policy(s.policy), load_profile(s.profiles, "filekey"))


def _events(out):
    return [json.loads(x) for x in (out / "audit.log").read_text().splitlines() if '"kind":"entry"' in x]


def _verifiers(ws):
    return [Verifier.parse((ws.dir / "w" / f"{w}.key.pub").read_text()) for w in ("carol", "dave")]


def test_whole_ceremony_then_rerun_then_audit(ws):
    plan = _plan(ws)
    hsm = FakeHsm()
    result = Ceremony(plan, hsm).run()
    out = result.output
    assert result.steps_run == [s["id"] for s in SCRIPT["steps"]]
    assert len(hsm.keys) == 1 and len(hsm.seeds) == 1
    assert {"root.pem", "unit-root.pub.pem", "unit-root.provenance.json"} <= \
        {p.name for p in out.iterdir()}
    again = Ceremony(plan, FakeHsm()).run()
    assert again.steps_run == [] and len(again.steps_skipped) == len(SCRIPT["steps"])
    key = Verifier.parse((out / "log.pub").read_text())
    report = verify_folder(out, [key], _verifiers(ws))
    assert report.provenance == 1 and report.outputs >= 5 and set(report.cosigners) == {
        "witness.example/carol", "witness.example/dave"}


def test_failed_step_is_logged_and_resume_adopts_the_key(ws):
    plan = _plan(ws)
    hsm = Flaky()
    with pytest.raises(StepFailed, match="root-cert"):
        Ceremony(plan, hsm).run()
    out = plan.script.output
    assert [e["event"] for e in _events(out) if e["step"] == "root-cert"][-1] == "step.failed"
    result = Ceremony(plan, hsm).run()  # the same token, now healthy
    assert "root-cert" in result.steps_run and "root-key" in result.steps_skipped
    assert len(hsm.keys) == 1  # never a second key
    verify_folder(out, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))


def test_tampered_output_is_caught_by_the_auditor(ws):
    plan = _plan(ws)
    out = Ceremony(plan, FakeHsm()).run().output
    (out / "root.pem").write_bytes((out / "root.pem").read_bytes().replace(b"A", b"B", 1))
    with pytest.raises(StepFailed, match="root.pem does not match the digest recorded in the log"):
        verify_folder(out, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))


def test_the_runner_names_no_step_type():
    """Issue 21: sealing and the facts ceremony.started records are the step kind's (StepKind.sealed, .started);
    the runner imported witness_signoff's rules. Adding a step type touches its module and the registry only."""
    from pathlib import Path

    from ceremony.steps import REGISTRY
    src = (Path(__file__).resolve().parents[3] / "ceremony" / "runner.py").read_text()
    assert [name for name in REGISTRY if name in src] == []
    assert "steps." not in src.replace("from .steps import REGISTRY, Step", "")
