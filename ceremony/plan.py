"""The ceremony plan: validate script, policy and profile together and describe what will happen.

Not pure, and says so: it reads the entropy configuration, checks which output files exist and whether the
profile's module does, and opens a simulator or raw-sample-file source (only those: never a device, an HSM or the
network) to read the identity and claimed min-entropy the policy is checked against; the source is closed before
the plan returns and no sample is read. Every violation is collected, then raised together as a PolicyViolation.
"""

from __future__ import annotations

from pathlib import Path

from qrng.config import EntropyConfig, load_config

from .errors import PolicyViolation
from .model import Plan, PlannedStep, Policy, Profile, Script, Step
from .steps import REGISTRY, PlanView
from .steps.base import CEREMONY_FILES

__all__ = ["Plan", "PlannedStep", "make_plan"]


def _described(entropy: EntropyConfig) -> str:
    """A source the plan does not open (a device): described from configuration."""
    s = entropy.source
    if s.type == "usb":
        who = f"USB QRNG {s.vendor_id:04x}:{s.product_id:04x}" + (f" serial {s.serial}" if s.serial else "")
        return f"SIMULATOR: USB EMULATOR {who} (a software device, not a physical device)" if s.emulator else who
    return f"{s.type} source {s.path}".rstrip()


def make_plan(script: Script, policy: Policy, profile: Profile, check_outputs: bool = True) -> Plan:
    v: list[str] = []
    if (script.output / "audit.log").exists():
        check_outputs = False  # a resumed run: the engine never overwrites, and checks recorded digests
    entropy = load_config(script.entropy_config) if script.entropy_config else EntropyConfig()
    from qrng.sources import open_source
    src = open_source(entropy.source) if entropy.source.type in ("simulator", "file") else None
    label = src.info.label if src else _described(entropy)
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
    for r in policy.manufacturer_roots:
        if not r.exists():
            v.append(f"manufacturer root {r} named by the policy does not exist")
    if "attest_device" in policy.required_before_keygen:  # a policy that trusts nothing yet (the template)
        if not policy.manufacturer_roots:
            v.append(f"policy {policy.name} trusts no manufacturer root: name your device manufacturer's root "
                     "certificate in attestation.manufacturer_roots before running")
        if not policy.allow_simulator and not policy.firmware.active:
            v.append(f"policy {policy.name} accepts no firmware: name the vendor's firmware transparency log "
                     "(attestation.firmware.transparency_log) or the certified digests "
                     "(attestation.firmware.allowed_sha256) before running")
    planned = []
    earlier: dict[str, Step] = {}
    written: dict[str, str] = {}  # file name -> the YAML path of the step that writes it
    for s in script.steps:
        kind = REGISTRY[s.type]
        view = PlanView(policy, profile, script, dict(earlier))
        v.extend(kind.check(s, view))
        for name in (*s.outputs(), *kind.declared(s, view)):  # every file a step writes, declared (issue 20)
            if name in CEREMONY_FILES or name.startswith("."):
                v.append(f"{s.path} writes {name!r}, a file the ceremony keeps itself; choose another name")
            elif name in written:
                v.append(f"{s.path} writes {name!r}, which {written[name]} writes too; outputs are never "
                         "overwritten")
            else:
                written[name] = s.path
        before = {e.type for e in earlier.values()}
        v.extend(f"{s.path}: a {req} step must come before a {s.type} step" for req in kind.requires
                 if req not in before)
        outs = tuple(s.outputs())
        if check_outputs:
            for o in outs:
                if (script.output / o).exists():
                    v.append(f"{s.path}.output {script.output / o} already exists; outputs are never overwritten")
        planned.append(PlannedStep(s.id, s.type, kind.summary(s.params), outs))
        earlier[s.id] = s
    sealing = [i for i, s in enumerate(script.steps) if REGISTRY[s.type].seals]
    if sealing and sealing[0] != len(script.steps) - 1:
        v.append(f"{script.steps[sealing[0]].type} must be the last step: witnesses sign the ceremony's final state")
    if policy.witness_quorum and "witness_signoff" not in types:
        v.append(f"policy requires {policy.witness_quorum} witness sign-offs: add a witness_signoff step")
    if not Path(profile.module).exists():
        v.append(f"profile {profile.name}: PKCS#11 module {profile.module} not found")
    if v:
        raise PolicyViolation(_located(v, script))
    return Plan(script, policy, profile, entropy, label, claimed, tuple(planned))


def _located(violations: list[str], script: Script) -> list[str]:
    """A violation about a step names the script's file, line and column and the step's id as the plan prints it
    (``root-ca.yaml:31:5: steps[5] (root-key).validity_days ...``); the others are left as they are."""
    import re

    from qrng.yaml_input import marks, read_text
    try:
        where = marks(read_text(script.path))
    except (OSError, ValueError):  # read and parsed already when loaded; the locations are only a help
        where = {}
    ids = {f"steps[{i}]": s.id for i, s in enumerate(script.steps)}
    out = []
    for text in violations:
        m = re.match(r"(steps\[\d+\])([.\w\[\]]*)", text)
        if m is None or m.group(1) not in ids:
            out.append(text)
            continue
        path = m.group(1) + m.group(2)
        while path and path not in where:
            path = path.rsplit(".", 1)[0] if "." in path else path.rsplit("[", 1)[0] if path.count("[") > 1 else ""
        line, col = where.get(path, where.get(m.group(1), (0, 0)))
        located = f"{script.path.name}:{line}:{col}: " if line else f"{script.path.name}: "
        out.append(located + m.group(1) + f" ({ids[m.group(1)]})" + text[len(m.group(1)):])
    return out
