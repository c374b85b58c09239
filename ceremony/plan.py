"""The ceremony plan: validate script, policy and profile together and describe what will happen.

Pure apart from reading the entropy configuration and checking which output files exist; it connects
to nothing. Every violation is collected, then raised together as a PolicyViolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrng.config import EntropyConfig, load_config

from .errors import PolicyViolation
from .model import Policy, Profile, Script, Step

__all__ = ["Plan", "PlannedStep", "make_plan"]


@dataclass(frozen=True)
class PlannedStep:
    id: str
    type: str
    summary: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    script: Script
    policy: Policy
    profile: Profile
    entropy: EntropyConfig
    source_label: str
    claimed_min_entropy: float
    steps: tuple[PlannedStep, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ceremony": self.script.ceremony, "policy": self.policy.name, "profile": self.profile.name,
                "module": self.profile.module, "token": self.profile.token_label,
                "output": str(self.script.output), "source": self.source_label,
                "claimed_min_entropy": self.claimed_min_entropy,
                "steps": [{"id": s.id, "type": s.type, "summary": s.summary, "outputs": list(s.outputs)}
                          for s in self.steps]}

    def render(self) -> str:
        lines = [f"Ceremony {self.script.ceremony}: {self.script.description}".rstrip(": "),
                 f"  policy   {self.policy.name} ({self.policy.path})",
                 f"  profile  {self.profile.name}: {self.profile.module}, token '{self.profile.token_label}'",
                 f"  source   {self.source_label}, claimed H = {self.claimed_min_entropy} bits/sample",
                 f"  output   {self.script.output}", ""]
        for i, s in enumerate(self.steps, 1):
            outs = f"  -> {', '.join(s.outputs)}" if s.outputs else ""
            lines.append(f"  {i:2}. [{s.id}] {s.type}: {s.summary}{outs}")
        return "\n".join(lines)


def _summary(step: Step, keys: dict[str, Any]) -> str:
    p = step.params
    match step.type:
        case "attest_device":
            return "verify the entropy source's signed attestation with a fresh nonce"
        case "health_check":
            return f"start-up and continuous SP 800-90B tests over {p['samples']:,} samples"
        case "collect_entropy":
            return f"commit to {p['samples']:,} raw samples (SHA-256), keep them, extract"
        case "estimate_entropy":
            return f"SP 800-90B assessment of the samples of step {p['samples_from']}"
        case "seed_hsm":
            return f"C_SeedRandom with {p.get('bytes', 48)} extracted bytes"
        case "generate_keypair":
            k = p["key"]
            return f"{k.describe()} key '{k.label}' generated inside the HSM, never extractable"
        case "self_signed_root":
            return f"self-signed root CN={p['subject']['CN']}, {p['validity_days']} days, by key of {p['key']}"
        case "csr":
            return f"CSR CN={p['subject']['CN']} signed by key of {p['key']}"
        case "issue_certificate":
            return f"certificate for CSR {p['csr']} ({p['profile']}, {p['validity_days']} days) by {p['issuer']}"
        case "crl":
            return f"CRL by {p['issuer']}, next update in {p['next_update_days']} days"
        case "export_public":
            return "public keys of " + ", ".join(p["keys"])
        case "witness_signoff":
            return "each witness cosigns the ceremony's current checkpoint"
        case "verify_outputs":
            return "chain verifies, keys sign, outputs match their recorded digests"
    return step.type


def _key_allowed(policy: Policy, spec: Any) -> bool:
    for a in policy.keys:
        if a["type"] != spec.type:
            continue
        if spec.type == "rsa" and spec.size in a["sizes"]:
            return True
        if spec.type == "ec" and spec.curve in a["curves"]:
            return True
        if spec.type == "ed25519":
            return True
    return False


def _allowed_text(policy: Policy) -> str:
    parts = []
    for a in policy.keys:
        if a["type"] == "rsa":
            parts.append("RSA " + "/".join(map(str, a["sizes"])))
        elif a["type"] == "ec":
            parts.append("EC " + "/".join(a["curves"]))
        else:
            parts.append("Ed25519")
    return ", ".join(parts) or "none"


def make_plan(script: Script, policy: Policy, profile: Profile, check_outputs: bool = True) -> Plan:
    v: list[str] = []
    if (script.output / "audit.log").exists():
        check_outputs = False  # a resumed run: the engine never overwrites, and checks recorded digests
    entropy = load_config(script.entropy_config) if script.entropy_config else EntropyConfig()
    from qrng.sources import open_source
    src = open_source(entropy.source) if entropy.source.type in ("simulator", "file") else None
    label = src.info.label if src else f"{entropy.source.type} source"
    claimed = src.info.claimed_min_entropy if src else float(entropy.source.claimed_min_entropy or 0)
    if src is not None:
        src.close()
    if claimed < policy.min_claimed_entropy:
        v.append(f"entropy source claims {claimed} bits/sample; policy {policy.name} requires at least "
                 f"{policy.min_claimed_entropy}")
    if entropy.health.alpha_log2 > policy.max_alpha_log2:
        v.append(f"health.alpha_log2 is {entropy.health.alpha_log2:g}; policy allows at most {policy.max_alpha_log2:g}")
    if entropy.source.type == "simulator" and not policy.allow_simulator:
        v.append(f"policy {policy.name} forbids the simulator as an entropy source")
    types = [s.type for s in script.steps]
    first_keygen = types.index("generate_keypair") if "generate_keypair" in types else len(types)
    for req in policy.required_before_keygen:
        if req not in types[:first_keygen]:
            v.append(f"policy requires a {req} step before the first key generation")
    if policy.seed_required and "seed_hsm" not in types[:first_keygen]:
        v.append("policy requires seed_hsm before key generation")
    if "attest_device" in types and not policy.manufacturer_roots:
        v.append("attest_device needs attestation.manufacturer_roots in the policy")
    for r in policy.manufacturer_roots:
        if not r.exists():
            v.append(f"manufacturer root {r} named by the policy does not exist")
    keys: dict[str, Any] = {}
    planned = []
    for s in script.steps:
        p = s.params
        if s.type == "generate_keypair":
            spec = p["key"]
            keys[s.id] = spec
            if not _key_allowed(policy, spec):
                v.append(f"{s.path}.key: {spec.describe()} is not allowed by policy {policy.name} "
                         f"(allowed: {_allowed_text(policy)})")
        if s.type in ("self_signed_root", "issue_certificate"):
            prof = policy.cert_profiles.get(p["profile"])
            if prof is None:
                v.append(f"{s.path}.profile {p['profile']!r} is not a certificate profile of policy {policy.name} "
                         f"({', '.join(policy.cert_profiles)})")
            elif p["validity_days"] > prof.max_validity_days:
                v.append(f"{s.path}.validity_days {p['validity_days']} exceeds the policy's "
                         f"{prof.max_validity_days} for {p['profile']}")
        for ref_name in ("key", "issuer_key"):
            ref = p.get(ref_name)
            if isinstance(ref, str) and ref not in keys:
                v.append(f"{s.path}.{ref_name} must name a generate_keypair step (got {ref!r})")
        if s.type == "witness_signoff":
            if len(script.witnesses) < policy.witness_quorum:
                v.append(f"policy quorum is {policy.witness_quorum} witnesses; the script names "
                         f"{len(script.witnesses)}")
            missing = [w for w in script.witnesses if w not in profile.witness_keys]
            if missing:
                v.append(f"profile {profile.name} has no key for witness(es) {', '.join(missing)}")
        outs = tuple(s.outputs())
        if check_outputs:
            for o in outs:
                if (script.output / o).exists():
                    v.append(f"{s.path}.output {script.output / o} already exists; outputs are never overwritten")
        planned.append(PlannedStep(s.id, s.type, _summary(s, keys), outs))
    if "witness_signoff" in types and types.index("witness_signoff") != len(types) - 1:
        v.append("witness_signoff must be the last step: witnesses sign the ceremony's final state")
    if policy.witness_quorum and "witness_signoff" not in types:
        v.append(f"policy requires {policy.witness_quorum} witness sign-offs: add a witness_signoff step")
    if not Path(profile.module).exists():
        v.append(f"profile {profile.name}: PKCS#11 module {profile.module} not found")
    if v:
        raise PolicyViolation(v)
    return Plan(script, policy, profile, entropy, label, claimed, tuple(planned))
