"""docs/ceremony-reference.md: every field of a ceremony script, each step type, a policy and a profile, read off
the parsers themselves. While the shipped examples (ceremonies/, policies/) are parsed, qrng.yaml_input.observing
records every field a parser asks for, with its reader (the type), its default (or "required"), its bounds or
choices; the prose comes from each step module's DOCS and from this module's tables for the script, policy and
profile. `qrng ceremony reference --write-docs` writes the file; a test fails when it is stale, and when a field
the parsers read has no description (or a description names a field no parser reads)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrng.yaml_input import Fields, load_yaml, observing

__all__ = ["DOC", "Field", "build", "collect", "examples"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ceremony-reference.md"


@dataclass
class Field:
    """One field as the parsers read it (merged over every place it was read)."""
    kind: str
    default: Any
    limits: dict[str, Any] = field(default_factory=dict)

    def merge(self, kind: str, info: dict[str, Any]) -> None:
        if self.default is Fields.MISSING and info["default"] is not Fields.MISSING:
            self.default = info["default"]
        for k, v in info.items():
            if k != "default" and v is not None:
                self.limits[k] = v


def _generic(path: str, step_types: dict[str, str]) -> tuple[str, str]:
    """(section, field) of a concrete path: steps[3].key.size -> ("step:generate_keypair", "key.size");
    allowed_keys[1].curves -> ("policy", "allowed_keys[].curves"); certificates.root_ca.ca ->
    ("policy", "certificates.<profile>.ca")."""
    m = re.match(r"steps\[(\d+)\]\.(.+)", path)
    if m:
        return f"step:{step_types[m.group(1)]}", m.group(2)
    return "", re.sub(r"\[\d+\]", "[]", path)


def collect(scripts: Iterable[Path], policies: Iterable[Path], profiles: Iterable[Path]) -> dict[str, dict[str, Field]]:
    """{section: {field: Field}} for "script", "policy", "profile" and "step:<type>" from parsing these files."""
    from .model import load_policy, load_profile, load_script
    from .steps import REGISTRY
    out: dict[str, dict[str, Field]] = {}
    current = {"section": "", "steps": {}}

    def seen(path: str, kind: str, info: dict[str, Any]) -> None:
        section, name = _generic(path, current["steps"])  # type: ignore[arg-type]
        section = section or str(current["section"])
        if section == "policy":
            name = re.sub(r"^certificates\.[^.]+", "certificates.<profile>", name)
        if section == "profile":
            name = re.sub(r"^profiles\.[^.]+", "profiles.<name>", name)
        entry = out.setdefault(section, {}).setdefault(name, Field(kind, info["default"]))
        entry.merge(kind, info)

    with observing(seen):
        for path in scripts:
            steps = (load_yaml(path) or {}).get("steps") or []
            current.update(section="script", steps={str(i): s.get("type", "?") for i, s in enumerate(steps)})
            load_script(path, registry=REGISTRY)
        for path in policies:
            current["section"] = "policy"
            load_policy(path, registry=REGISTRY)
        for path in profiles:
            current["section"] = "profile"
            for name in (load_yaml(path) or {}).get("profiles") or {}:
                load_profile(path, name)
    return out


# fields the shipped examples do not reach, parsed on their own so the reference shows every variant
STEP_PROBES: dict[str, tuple[dict[str, Any], ...]] = {
    "generate_keypair": ({"key": {"type": "rsa", "label": "probe", "size": 3072}},
                         {"key": {"type": "ed25519", "label": "probe"}}),
    "self_signed_root": ({"key": "k", "subject": {"CN": "probe", "OU": "u", "L": "l", "ST": "s"},
                          "validity_days": 1, "profile": "p", "output": "probe.pem"},),
    "issue_certificate": ({"issuer": "r", "issuer_key": "k", "csr": "c", "profile": "p", "validity_days": 1,
                           "output": "probe.pem", "subject_alt_names": {"dns": ["probe.example"], "ip": ["::1"]}},),
}

SCRIPT_DOCS = {
    "version": "the script format: 1",
    "ceremony": "the ceremony's name: letters, digits, '-', '.', '_'; it names the audit log's origin",
    "description": "one line for the papers",
    "policy": "the policy file (relative to the script): what the plan must satisfy before any HSM is touched",
    "profiles": "the profiles file (relative to the script); `--profile NAME` picks the HSM and keys to use",
    "output": "the ceremony's output folder (relative to the script); `--output` replaces it",
    "entropy_config": "the entropy source's configuration (qrng.yaml format); default: the machine's",
    "roles": "the people's roles, shown on the papers: role -> name",
    "roles.<role>": "the name of the person in this role",
    "witnesses": "the witness key names (of the profile's witness_keys) that cosign the ceremony's checkpoints",
    "steps": "the steps, in order: each has an id, a type and the fields of its type (below)",
}
STEP_COMMON_DOCS = {
    "id": "the step's name: letters, digits, '-', '_'; later steps refer to it",
    "type": "the step type: one of the sections below",
}
POLICY_DOCS = {
    "version": "the policy format: 1",
    "name": "the policy's name, recorded in the log",
    "allowed_keys": "the key types a generate_keypair step may use",
    "allowed_keys[].type": "rsa, ec or ed25519",
    "allowed_keys[].sizes": "the RSA modulus sizes allowed (type rsa)",
    "allowed_keys[].curves": "the curves allowed (type ec)",
    "certificates": "the certificate profiles steps name (profile: NAME)",
    "certificates.<profile>": "one profile",
    "certificates.<profile>.ca": "a CA certificate (basicConstraints cA)",
    "certificates.<profile>.path_length": "basicConstraints pathLenConstraint (CA profiles)",
    "certificates.<profile>.max_validity_days": "the longest validity a step may ask for",
    "certificates.<profile>.extended_key_usage": "extendedKeyUsage purposes (server_auth, client_auth, ...)",
    "entropy": "what the entropy source must show",
    "entropy.min_claimed_min_entropy": "the least min-entropy per sample the source may claim (bits)",
    "entropy.max_alpha_log2": "the health tests' false-positive rate may be at most 2^this",
    "entropy.allow_simulator": "whether the SIMULATOR (or the USB EMULATOR) may be the source: rehearsals only",
    "entropy.max_estimate_shortfall": "how far (bits) an SP 800-90B estimate may fall below the claim",
    "entropy.min_estimated_min_entropy": "the least SP 800-90B estimate accepted (bits per sample)",
    "required_before_keygen": "step types that must come before the first generate_keypair",
    "seed_hsm": "C_SeedRandom with QRNG bytes",
    "seed_hsm.required": "a seed_hsm step must come before key generation",
    "seed_hsm.allow_unsupported": "a token that refuses C_SeedRandom does not stop the ceremony",
    "witnesses": "the witnesses' cosignatures",
    "witnesses.quorum": "how many witnesses must cosign (0: none)",
    "attestation": "what the device's attestation must chain to",
    "attestation.manufacturer_roots": "the manufacturer root certificates trusted (PEM files, relative to the policy)",
    "attestation.firmware": "the firmware a device may run",
    "attestation.firmware.allowed_sha256": "firmware digests allowed outright",
    "attestation.firmware.transparency_log": "a firmware transparency log whose entries are allowed",
    "attestation.firmware.transparency_log.origin": "the log's origin line",
    "attestation.firmware.transparency_log.key": "the log's verifier key file",
    "attestation.firmware.transparency_log.witnesses": "the log's witnesses' key files",
    "attestation.firmware.transparency_log.quorum": "how many of them must have cosigned",
    "min_serial_bits": "the least random bits in a certificate serial number (from the QRNG)",
}
PROFILE_DOCS = {
    "version": "the profiles format: 1",
    "profiles": "the profiles: name -> profile",
    "profiles.<name>": "one profile: an HSM, how to log in, which keys sign the log and cosign it",
    "profiles.<name>.module": "the PKCS#11 module of the HSM",
    "profiles.<name>.token_label": "the token's label",
    "profiles.<name>.pin": "where the user PIN comes from",
    "profiles.<name>.pin.source": "prompt (asked on the terminal), file or env",
    "profiles.<name>.pin.path": "the file holding it (source file), relative to the profiles file",
    "profiles.<name>.pin.variable": "the environment variable holding it (source env)",
    "profiles.<name>.env": "environment variables for the module (such as SOFTHSM2_CONF): name -> value",
    "profiles.<name>.env.<VAR>": "one variable",
    "profiles.<name>.log_key": "the key that signs the audit log's checkpoints",
    "profiles.<name>.log_key.hsm_label": "a key in the HSM (its label)",
    "profiles.<name>.log_key.file": "a signed-note key file (a bootstrap ceremony before the HSM holds one)",
    "profiles.<name>.log_url_prefix": "where the log's tiles will be published, recorded in the log",
    "profiles.<name>.witness_keys": "the witnesses' verifier keys: name -> key file",
    "profiles.<name>.witness_keys.<witness>": "one witness's key file",
    "profiles.<name>.witness_policy": "a tlog-policy file for the witnesses instead of the policy's quorum",
    "profiles.<name>.attestation_history": "earlier ceremony logs whose attestation counters must be exceeded",
}


def _placeholders(section: str, name: str) -> str:
    if section == "script":
        return re.sub(r"^roles\.[^.]+$", "roles.<role>", name)
    if section == "profile":
        name = re.sub(r"^(profiles\.<name>\.env)\.[^.]+$", r"\1.<VAR>", name)
        return re.sub(r"^(profiles\.<name>\.witness_keys)\..+$", r"\1.<witness>", name)
    return name


def _allowed(f: Field) -> str:
    lim = f.limits
    if lim.get("choices"):
        return ", ".join(f"`{c}`" for c in lim["choices"])
    lo, hi = lim.get("lo"), lim.get("hi")
    if lo is not None or hi is not None:
        return f"{'' if lo is None else f'{lo:,}'} to {'' if hi is None else f'{hi:,}'}".strip()
    return ""


def _default(f: Field) -> str:
    if f.default is Fields.MISSING:
        return "required"
    if f.default is None or f.default in ({}, [], ""):
        return "(none)"
    return f"`{f.default}`"


def _table(fields: dict[str, Field], docs: dict[str, str], missing: list[str], where: str) -> list[str]:
    rows = ["| field | type | default | allowed | what it does |", "|---|---|---|---|---|"]
    for name in sorted(fields):
        text = docs.get(name)
        if text is None:
            missing.append(f"{where}: {name}")
            text = "**not documented**"
        rows.append(f"| `{name}` | {fields[name].kind} | {_default(fields[name])} | {_allowed(fields[name])} | "
                    f"{text} |")
    rows += [f"| `{name}` | | | | {docs[name]} (**no parser reads it**) |" for name in sorted(set(docs) - set(fields))]
    missing += [f"{where}: {name} (documented, never read)" for name in sorted(set(docs) - set(fields))]
    return rows


# a profile the shipped examples do not show: the PIN from the environment
PROFILE_PROBE = """version: 1
profiles:
  probe: {module: /probe.so, token_label: probe, pin: {source: env, variable: PROBE_PIN}, log_key: {hsm_label: k}}
"""


def examples() -> tuple[list[Path], list[Path], list[Path]]:
    """The shipped scripts, policies and profiles files the reference is read from (a checkout's: an installed
    package has no examples to read; its reference is the docs/ceremony-reference.md it came with)."""
    if not (ROOT / "ceremonies" / "profiles.yaml").is_file() or not (ROOT / "policies").is_dir():
        from qrng.errors import SetupError
        raise SetupError(f"the reference is read from a checkout's examples (ceremonies/, policies/), which are not "
                         f"beside this installation ({ROOT}); see docs/ceremony-reference.md of the release")
    scripts = [p for p in sorted((ROOT / "ceremonies").glob("*.yaml")) if "ceremony" in (load_yaml(p) or {})]
    return scripts, sorted((ROOT / "policies").glob("*.yaml")), [ROOT / "ceremonies" / "profiles.yaml"]


def build() -> tuple[str, list[str]]:
    """The reference as Markdown, and what is missing from it (fields without a description, descriptions of
    fields no parser reads): empty when it is complete."""
    import tempfile

    from .steps import REGISTRY
    scripts, policies, profiles = examples()
    with tempfile.TemporaryDirectory(prefix="qrng-reference-") as tmp:
        probe = Path(tmp) / "profiles.yaml"
        probe.write_text(PROFILE_PROBE)
        found = collect(scripts, policies, [*profiles, probe])
    with observing(lambda path, kind, info: _probe(found, path, kind, info)):
        for type_name, values in STEP_PROBES.items():
            for value in values:
                _probe_parse(REGISTRY[type_name], type_name, value)
    missing: list[str] = []
    out = ["# Ceremony reference: scripts, steps, policies, profiles", "",
           "Generated by `qrng ceremony reference --write-docs` from the parsers themselves (ceremony/reference.py);",
           "a test fails when this file is stale. Every field the parsers read is listed with its type, its default",
           "(\"required\" when there is none), the values allowed, and what it does. A key that is not listed is",
           "refused with its file, line and column.", "", "## The script", ""]
    script = {_placeholders("script", k): v for k, v in found.get("script", {}).items()}
    out += _table(script, SCRIPT_DOCS, missing, "script")
    out += ["", "## Steps", "", "Every step has:", ""]
    common = {k: v for k, v in found.get(f"step:{next(iter(REGISTRY))}", {}).items() if k in STEP_COMMON_DOCS}
    out += _table(common, STEP_COMMON_DOCS, missing, "steps")
    for name, step_kind in REGISTRY.items():
        module = __import__(step_kind.run.__module__, fromlist=["__doc__"])
        doc = " ".join((module.__doc__ or "").split("\n\n")[0].split())
        fields = {k: v for k, v in found.get(f"step:{name}", {}).items() if k not in STEP_COMMON_DOCS}
        out += ["", f"### `{name}`", "", doc, ""]
        if step_kind.requires:
            out += [f"Must come after: {', '.join(f'`{r}`' for r in step_kind.requires)}.", ""]
        out += _table(fields, step_kind.docs, missing, f"step {name}") if fields or step_kind.docs else \
            ["No fields of its own."]
    out += ["", "## The policy", ""]
    out += _table(found.get("policy", {}), POLICY_DOCS, missing, "policy")
    out += ["", "## The profiles file", ""]
    prof = {_placeholders("profile", k): v for k, v in found.get("profile", {}).items()}
    out += _table(prof, PROFILE_DOCS, missing, "profile")
    return "\n".join(out) + "\n", missing


_PROBING: dict[str, str] = {}


def _probe_parse(kind: Any, name: str, value: dict[str, Any]) -> None:
    _PROBING["kind"] = name
    kind.parse(Fields(value, "probe"))


def _probe(found: dict[str, dict[str, Field]], path: str, kind: str, info: dict[str, Any]) -> None:
    name = path.removeprefix("probe.")
    entry = found.setdefault(f"step:{_PROBING['kind']}", {}).setdefault(name, Field(kind, info["default"]))
    entry.merge(kind, info)
