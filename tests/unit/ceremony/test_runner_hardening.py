"""Issue 10 regressions for the runner: concurrent runs (item 2), a hand-appended tail on resume (item 4), and
refusals that leave nothing behind (item 16). FakeHsm, no SoftHSM2."""

from __future__ import annotations

import json
import os

import pytest

from ceremony.errors import Refused, StepFailed
from ceremony.runner import Ceremony
from ceremony.verify import verify_folder
from qrng.errors import ResourceBusy
from qrng.lockfile import hold
from transparency.log import AuditLog
from transparency.note import Verifier

from .fake_hsm import FakeHsm
from .test_runner import Flaky, _events, _plan, _verifiers


def test_second_run_of_a_ceremony_is_refused_naming_the_holder(ws):
    plan = _plan(ws)
    out = plan.script.output
    out.mkdir(parents=True)
    with hold(out / ".lock", "test holder"), pytest.raises(ResourceBusy) as exc:
        Ceremony(plan, FakeHsm()).run()
    assert f"pid {os.getpid()}" in str(exc.value) and "refusing to run a second time" in str(exc.value)
    assert not (out / "audit.log").exists()


def test_second_appender_to_an_audit_log_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from transparency.note import ed25519_signer
    signer = ed25519_signer("log.example", ed25519.Ed25519PrivateKey.generate())
    first = AuditLog(tmp_path / "a.log", "log.example", signer)
    try:
        with pytest.raises(ResourceBusy, match="audit log .* is in use by pid"):
            AuditLog(tmp_path / "a.log", "log.example", signer)
    finally:
        first.close()
    AuditLog(tmp_path / "a.log", "log.example", signer).close()  # free again once the first is closed


def test_existing_key_label_refuses_without_leaving_a_folder(ws):
    plan = _plan(ws)
    hsm = FakeHsm()
    from ceremony.keys import KeySpec
    hsm.generate(KeySpec("unit-root", "ec", curve="P-256"), b"other-id")
    with pytest.raises(Refused, match="a key labelled 'unit-root' already exists"):
        Ceremony(plan, hsm).run()
    assert not plan.script.output.exists()


def test_hand_appended_completion_after_the_last_checkpoint_is_not_trusted(ws):
    plan = _plan(ws)
    out = plan.script.output
    hsm = Flaky()
    with pytest.raises(StepFailed):
        Ceremony(plan, hsm).run()  # root-cert failed; its failure is signed
    runner = Ceremony(plan, hsm)
    forged = AuditLog(out / "audit.log", runner.origin, runner.signer)
    forged.append("root-cert", "mallory", "step.completed", data={"outputs": {}, "results": {"output": "root.pem"}})
    forged.close()  # no checkpoint: the forged entry is not signed
    result = runner.run()
    assert "root-cert" in result.steps_run  # redone, not skipped on the word of an unsigned entry
    events = _events(out)
    tail = [e for e in events if e["event"] == "log.tail_unconfirmed"]
    assert len(tail) == 1 and tail[0]["data"]["entries"] == 1
    side = out / tail[0]["data"]["folder"]
    assert b'"actor":"mallory"' in (side / "audit.log.tail").read_bytes()
    assert not any(e["actor"] == "mallory" for e in events)  # never signed over as a log entry
    report = verify_folder(out, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))
    assert report.provenance == 1


def test_carried_key_id_makes_the_redone_key_step_adopt_its_key(ws):
    """A crash right after a key was generated (its step.started unsigned): the key is adopted, never doubled."""
    plan = _plan(ws)
    out = plan.script.output
    hsm = FakeHsm()

    class Crash(BaseException):
        pass

    real_generate = hsm.generate

    def generate_then_crash(spec, key_id):
        real_generate(spec, key_id)
        raise Crash()  # like kill -9 between C_GenerateKeyPair and the next log entry
    hsm.generate = generate_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        Ceremony(plan, hsm).run()
    hsm.generate = real_generate  # type: ignore[method-assign]
    result = Ceremony(plan, hsm).run()
    assert "root-key" in result.steps_run and len(hsm.keys) == 1
    started = [e for e in _events(out) if e["step"] == "root-key" and e["event"] == "step.started"]
    assert started[-1]["data"].get("carried_from_unconfirmed") is True
    adopted = [e for e in _events(out) if e["event"] == "key.adopted"]
    assert len(adopted) == 1 and json.dumps(adopted[0]["data"]["label"]) == '"unit-root"'


def test_a_token_without_the_mechanism_is_refused_up_front(ws):
    """Issue 10 item 21: where a token differs (openCryptoki's soft token has no EC), the ceremony says so before
    anything is logged, naming the mechanism, instead of failing obscurely inside the key step."""
    plan = _plan(ws)
    hsm = FakeHsm(offered=(0x0, 0x40))  # RSA only
    with pytest.raises(Refused, match="does not offer CKM_EC_KEY_PAIR_GEN nor CKM_ECDSA, so EC P-256 key"):
        Ceremony(plan, hsm).run()
    assert not plan.script.output.exists() and not hsm.keys


def test_attestation_counters_from_earlier_ceremonies(tmp_path):
    """Issue 20 (medium): a ceremony verified a device's attestation with a last counter of 0, so a replayed
    statement (or a device set back) passed. The highest counter recorded for the serial in this ceremony's log and
    in the profile's attestation_history logs is the floor."""
    import json as _json
    from types import SimpleNamespace

    from ceremony.steps.attest_device import last_counter, recorded_counters
    earlier = tmp_path / "root-ca-2025"
    earlier.mkdir()
    entries = [{"event": "attestation.verified", "data": {"serial": "EMU-0001", "counter": c}} for c in (5, 41, 17)]
    entries.append({"event": "attestation.verified", "data": {"serial": "OTHER", "counter": 99}})
    (earlier / "audit.log").write_text("".join(_json.dumps(e) + "\n" for e in entries) + "not json\n")
    assert recorded_counters((earlier / "audit.log").read_bytes()) == {"EMU-0001": 41, "OTHER": 99}
    now = tmp_path / "root-ca-2026"
    now.mkdir()
    c = SimpleNamespace(out=now, plan=SimpleNamespace(profile=SimpleNamespace(attestation_history=(str(earlier),))))
    assert last_counter(c, "EMU-0001") == 41 and last_counter(c, "NEW-1") == 0 and last_counter(c, "") == 0
