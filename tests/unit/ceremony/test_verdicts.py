"""Verdicts that say exactly what was checked (issue 19, section 1), through `qrng ceremony verify` and `qrng audit
verify` in-process on a ceremony run on the in-memory FakeHsm: exit 0 only with keys the auditor gave and the
quorum the log's recorded policy asks for; 4 for "consistent, not independently verified"; papers bound to the
log; PEM keys; the end-of-run hint is the complete command. Each was a gap in the verdicts before."""

from __future__ import annotations

import copy
import json
import shlex
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import qrng_cli
from ceremony.runner import Ceremony
from qrng_cli.ceremony import _verify_command
from transparency.note import Verifier

from .conftest import make_plan_workspace
from .fake_hsm import FakeHsm
from .test_runner import _plan


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    ws = make_plan_workspace(tmp_path_factory.mktemp("verdicts"))
    plan = _plan(ws)
    return ws, plan, Ceremony(plan, FakeHsm(), papers=(".html",)).run()


@pytest.fixture()
def run(ran, tmp_path):
    """The module's ceremony, its folder copied for this test (which may change it)."""
    ws, plan, result = ran
    mine = copy.copy(result)
    mine.output = tmp_path / result.output.name
    shutil.copytree(result.output, mine.output)
    return ws, plan, mine


def _main(argv, capsys):
    code = qrng_cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _witnesses(ws) -> list[str]:
    return [a for w in ("carol", "dave") for a in ("--witness", str(ws.dir / "w" / f"{w}.key.pub"))]


def test_the_end_of_run_hint_is_a_complete_command_that_verifies(run, capsys):
    ws, plan, result = run
    cmd = _verify_command(plan, result)
    argv = shlex.split(cmd)
    assert argv[:4] == ["qrng", "ceremony", "verify", str(result.output)]
    assert argv.count("--witness") == 2 and "--key" in argv and str(result.output / "log.pub") not in argv
    code, out, err = _main(argv[1:], capsys)
    assert code == 0, err
    assert "verified: every check the recorded policy asks for" in out
    assert "PASSED       Papers: transcript.html identical" in out


def test_without_witness_keys_the_verdict_is_not_independently_verified(run, capsys):
    """Regression: with no witness keys the witness check said "passed: none (quorum 0)" although the policy
    recorded in the log asks for 2 and the log carries 2 cosignatures."""
    ws, plan, result = run
    key = result.log_key
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", key, "--json"], capsys)
    assert code == 4
    doc = json.loads(out)
    assert doc["status"] == "unverified" and doc["exit_code"] == 4
    w = next(c for c in doc["checks"] if c["name"] == "Witness cosignatures")
    assert w["result"] == "not checked" and w["required"] and "requires 2 witness cosignatures" in w["detail"]
    assert "carries 2 cosignature line(s)" in w["detail"]
    assert not any(c["result"] == "failed" for c in doc["checks"])
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", key], capsys)
    assert code == 4 and "NOT INDEPENDENTLY VERIFIED (exit 4)" in err and "NOT CHECKED  Witness cosignatures" in out
    code, out, err = _main(["audit", "verify", str(result.output / "audit.log"), "--key", key], capsys)
    assert code == 4 and "NOT INDEPENDENTLY VERIFIED" in err  # the same rule for the log alone
    code, out, err = _main(["audit", "verify", str(result.output / "audit.log"), "--key", key,
                            *_witnesses(ws)], capsys)
    assert code == 0, err


def test_one_witness_key_is_not_the_recorded_quorum_of_two(run, capsys):
    ws, plan, result = run
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", result.log_key, "--witness",
                            str(ws.dir / "w" / "carol.key.pub")], capsys)
    assert code == 1 and "VERIFICATION FAILED: the latest checkpoint (size" in err
    assert "1 cosignature(s) by the witness keys given (witness.example/carol); 2 are required" in err


def test_the_folder_key_is_never_an_independent_verdict(run, capsys):
    """Regression: with no --key the folder's own log.pub was used, so a folder whose log and log.pub were replaced
    together passed. Now --key is required; --trust-folder-key is explicit and gives at best exit 4."""
    ws, plan, result = run
    code, out, err = _main(["ceremony", "verify", str(result.output), *_witnesses(ws)], capsys)
    assert code == 2 and "--key" in err and "--trust-folder-key" in err
    code, out, err = _main(["ceremony", "verify", str(result.output), "--trust-folder-key", *_witnesses(ws)], capsys)
    assert code == 4 and "NOT CHECKED  Log key (taken from" in out
    other = ed25519.Ed25519PrivateKey.generate()
    from transparency.note import ed25519_signer
    impostor = str(ed25519_signer(plan.script.ceremony, other).verifier)
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", impostor, *_witnesses(ws)], capsys)
    assert code == 1 and "no signature from a trusted key" in err


def test_a_missing_key_file_is_named(run, capsys, tmp_path):
    ws, plan, result = run
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", str(tmp_path / "nope.pub")], capsys)
    assert code == 2 and f"--key {tmp_path / 'nope.pub'}: no such file" in err and "Traceback" not in err
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", result.log_key, "--witness",
                            str(tmp_path / "w.pub")], capsys)
    assert code == 2 and f"--witness {tmp_path / 'w.pub'}: no such file" in err


def _pem_of(verifier_text: str) -> bytes:
    raw = Verifier.parse(verifier_text.strip()).public_key
    return ed25519.Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_pem_public_keys_are_accepted_for_the_log_and_the_witnesses(run, capsys, tmp_path):
    ws, plan, result = run
    (tmp_path / "log.pem").write_bytes(_pem_of(result.log_key))
    args = ["ceremony", "verify", str(result.output), "--key", str(tmp_path / "log.pem")]
    for w in ("carol", "dave"):
        (tmp_path / f"{w}.pem").write_bytes(_pem_of((ws.dir / "w" / f"{w}.key.pub").read_text()))
        args += ["--witness", str(tmp_path / f"{w}.pem")]
    code, out, err = _main(args, capsys)
    assert code == 0, err
    code, out, err = _main(["audit", "key", str(tmp_path / "log.pem"), "--name", plan.script.ceremony and
                            Verifier.parse(result.log_key).name], capsys)
    assert code == 0 and out.strip() == result.log_key


def test_an_edited_transcript_fails_verification_naming_it(run, capsys):
    ws, plan, result = run
    html = result.output / "transcript.html"
    html.write_text(html.read_text().replace("Olga Operator", "Eve Operator", 1))
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", result.log_key, *_witnesses(ws)],
                           capsys)
    assert code == 1 and f"{html}: differs from the transcript rendered from the verified log" in err
    assert "FAILED       Papers" in out


def test_a_transcript_from_another_version_is_not_checked_not_passed(run, capsys):
    ws, plan, result = run
    html = result.output / "transcript.html"
    html.write_text(html.read_text().replace('content="qrng-ceremony ', 'content="qrng-ceremony 0.0.1-', 1))
    code, out, err = _main(["ceremony", "verify", str(result.output), "--key", result.log_key, *_witnesses(ws)],
                           capsys)
    assert code == 4 and "NOT CHECKED  Papers (transcript.html was rendered by qrng-ceremony 0.0.1-" in out


def test_the_log_is_parsed_once_per_verification_and_per_rerun(run, capsys, monkeypatch):
    """Issue 21: `ceremony verify` parsed audit.log four times (verification, output digests, extraction re-runs,
    papers) and a completed ceremony run twice more before doing nothing; each now parses it once and passes the
    view on."""
    import transparency.verify as audit_verify
    ws, plan, result = run
    calls: list[int] = []
    real = audit_verify.parse_log

    def counting(data: bytes):
        calls.append(len(data))
        return real(data)
    for module in ("transparency.verify", "ceremony.verify", "ceremony.runner", "ceremony.papers.record"):
        monkeypatch.setattr(f"{module}.parse_log", counting, raising=False)
    code, out, err = _main(shlex.split(_verify_command(plan, result))[1:], capsys)
    assert code == 0, err
    assert len(calls) == 1, calls
    calls.clear()
    again = Ceremony(plan, FakeHsm(), papers=(".html",)).run()
    assert again.steps_skipped and len(calls) == 1, calls
