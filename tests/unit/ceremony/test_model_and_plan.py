"""Scripts, policies and profiles parse strictly; the plan collects every policy violation. Pure: no HSM."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.errors import PolicyViolation, ScriptError
from ceremony.loader import load_policy, load_profile, load_script
from ceremony.papers import pgp_words
from ceremony.plan import make_plan

from .conftest import PlanWorkspace as Workspace

ROOT = Path(__file__).resolve().parents[3]


def write(ws: Workspace, text: str, name: str = "s.yaml") -> Path:
    p = ws.script(name)
    p.write_text(text)
    return p


BASE = (ROOT / "ceremonies" / "audit-key.yaml").read_text()

SCRIPT_ERRORS = [
    ("version: 1\n" + BASE.split("\n", 2)[2].replace("ceremony: audit-key-2026", "ceremony: a b"), "ceremony must be"),
    (BASE.replace("version: 1", "version: 2"), "version unsupported version 2"),
    (BASE + "extra: 1\n", "extra is not a known key"),
    (BASE.replace("roles:", "roles:\n  x: 1\nroles:"), "duplicate key 'roles'"),
    (BASE.replace("samples: 1000000", "samples: many"), "steps[1].samples must be an integer"),
    (BASE.replace("type: health_check", "type: healthcheck"), "steps[1].type must be one of"),
    (BASE.replace("curve: P-256", "size: 3072"), "steps[4].key.curve is required"),
    (BASE.replace("{id: export, type: export_public, keys: [audit-key]}",
                  "{id: export, type: export_public, keys: [nope]}"), "steps[5].keys names step 'nope'"),
    (BASE.replace("{id: verify, type: verify_outputs}", "{id: export, type: verify_outputs}"),
     "steps[6].id 'export' repeats steps[5].id"),
    (BASE.replace("output: entropy-raw.bin", "output: ../escape.bin"), "steps[2].output must be a plain file name"),
    (BASE.replace("steps:", "steps: []\nx:"), "steps must list at least one step"),
    ("steps: [1, 2", "malformed YAML"),
]


@pytest.mark.parametrize("text,phrase", SCRIPT_ERRORS)
def test_script_errors_name_the_path(ws: Workspace, text: str, phrase: str):
    with pytest.raises(ScriptError, match=phrase.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_script(write(ws, text))


def _plan(ws: Workspace, script_text: str, profile: str = "filekey"):
    s = load_script(write(ws, script_text))
    return make_plan(s, load_policy(s.policy), load_profile(s.profiles, profile))


def test_example_plans_are_valid(ws: Workspace):
    plan = _plan(ws, BASE)
    assert [st.type for st in plan.steps][-1] == "witness_signoff"
    assert "SIMULATOR" in plan.render() and plan.to_dict()["claimed_min_entropy"] == 4.0


VIOLATIONS = [
    (BASE.replace("{label: audit-log-key, type: ec, curve: P-256}", "{label: k, type: rsa, size: 2048}"),
     "RSA-2048 is not allowed by policy rehearsal (allowed: RSA 3072/4096, EC P-256/P-384, Ed25519)"),
    (BASE.replace("  - {id: attest, type: attest_device}\n", ""), "requires a attest_device step before"),
    (BASE.replace("  - {id: signoff, type: witness_signoff}\n", ""), "add a witness_signoff step"),
    (BASE.replace("witnesses: [witness.example/carol, witness.example/dave]", "witnesses: [witness.example/carol]"),
     "quorum is 2 witnesses; the script names 1"),
    (BASE.replace("  - {id: verify, type: verify_outputs}\n  - {id: signoff, type: witness_signoff}\n",
                  "  - {id: signoff, type: witness_signoff}\n  - {id: verify, type: verify_outputs}\n"),
     "witness_signoff must be the last step"),
    (BASE.replace("witnesses: [witness.example/carol, witness.example/dave]",
                  "witnesses: [witness.example/carol, witness.example/erin]"),
     "no key for witness(es) witness.example/erin"),
]


@pytest.mark.parametrize("text,phrase", VIOLATIONS)
def test_policy_violations(ws: Workspace, text: str, phrase: str):
    with pytest.raises(PolicyViolation) as exc:
        _plan(ws, text)
    assert any(phrase in v for v in exc.value.violations), exc.value.violations


def test_certificate_validity_cap(ws: Workspace):
    text = (ROOT / "ceremonies" / "root-ca.yaml").read_text().replace("validity_days: 7300", "validity_days: 9999")
    with pytest.raises(PolicyViolation, match="validity_days 9999 exceeds the policy's 9131 for root_ca"):
        _plan(ws, text, "rehearsal")


def test_unknown_profile_is_named(ws: Workspace):
    s = load_script(write(ws, BASE))
    with pytest.raises(ScriptError, match="has no profile 'prod'"):
        load_profile(s.profiles, "prod")


@pytest.mark.parametrize("data,words", [
    (bytes([0, 0]), "aardvark adroitness"), (bytes([255, 255]), "Zulu Yucatan"),
    (bytes([0xE5, 0x82, 0x94]), "topmost Istanbul Pluto"),
])
def test_pgp_words(data: bytes, words: str):
    assert pgp_words(data) == words


def test_every_file_a_step_writes_is_declared_and_collisions_are_refused(ws):
    """Issue 20: a script output named like a key's exported public key (export_public writes <label>.pub.pem)
    was not refused by the plan, and one of the two files would have been lost."""
    from ceremony.errors import PolicyViolation

    def collide(doc):
        root = next(s for s in doc["steps"] if s["type"] == "self_signed_root")
        key = next(s for s in doc["steps"] if s["id"] == root["key"])
        root["output"] = f"{key['key']['label']}.pub.pem"
    path = ws.derive("root-ca.yaml", "collide.yaml", collide)
    s = load_script(path)
    with pytest.raises(PolicyViolation, match=r"\.pub\.pem', which steps\[\d+\] writes too"):
        make_plan(s, load_policy(s.policy), load_profile(s.profiles, "rehearsal"))
