"""Ceremony scripts, policies and profiles: parsed strictly at the edge into frozen dataclasses; and the plan's
record (``Plan``, made by :mod:`ceremony.plan`, read by the step kinds, so that no step imports the planner).

Unknown or duplicate keys and wrong types are errors quoting the YAML path
(``steps[3].key.size must be one of 3072, 4096``). Paths inside a file are relative to that file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrng.attestation.usb import FirmwarePolicy
from qrng.config import EntropyConfig
from qrng.errors import ConfigError
from qrng.hsm.profile import HsmProfile, PinSource
from qrng.yaml_input import Fields, check_plain, load_yaml, marks, read_text

from .errors import ScriptError
from .keys import CURVES, KeySpec

__all__ = ["CURVES", "KeySpec", "PinSource", "Policy", "Profile", "Script", "Step", "load_policy", "load_profile",
           "load_script"]


# step type name -> its module (ceremony.steps.REGISTRY): passed to the loaders, so the model names no step type
Registry = Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """One step of a script: its id, type, typed params (the step type's dataclass), YAML path, and the output
    files its type says it writes (computed once, when the script is loaded)."""

    id: str
    type: str
    params: Any
    path: str
    output_names: tuple[str, ...] = ()

    def outputs(self) -> tuple[str, ...]:
        return self.output_names

@dataclass(frozen=True)
class Script:
    path: Path
    ceremony: str
    description: str
    policy: Path
    profiles: Path
    output: Path
    entropy_config: Path | None
    roles: dict[str, str]
    witnesses: tuple[str, ...]
    steps: tuple[Step, ...]

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


@dataclass(frozen=True)
class Profile:
    name: str
    module: str
    token_label: str
    pin: PinSource
    env: dict[str, str] = field(default_factory=dict)
    log_key_label: str = ""
    log_key_file: str = ""
    witness_keys: dict[str, str] = field(default_factory=dict)
    witness_policy: str = ""  # a C2SP tlog-policy file: witness_signoff asks its witnesses over tlog-witness
    log_url_prefix: str = ""  # where the log's tiles are served, without scheme: the log's origin (tlog-tiles)
    # folders of earlier ceremonies whose logs record device attestation counters: a device's counter must be
    # above every one recorded there (a replayed statement or a device set back fails attestation)
    attestation_history: tuple[str, ...] = ()

    @property
    def hsm(self) -> HsmProfile:
        """The part the HSM edge needs: module, token, PIN source, environment."""
        return HsmProfile(self.name, self.module, self.token_label, self.pin, self.env)


EKU_NAMES = ("server_auth", "client_auth")


@dataclass(frozen=True)
class CertProfile:
    max_validity_days: int
    path_length: int | None
    ca: bool = True
    extended_key_usage: tuple[str, ...] = ()  # server_auth, client_auth (RFC 5280 4.2.1.12); end entities only


@dataclass(frozen=True)
class Policy:
    path: Path
    name: str
    keys: tuple[dict[str, Any], ...]
    cert_profiles: dict[str, CertProfile]
    min_claimed_entropy: float
    min_estimated_entropy: float | None
    max_estimate_shortfall: float
    max_alpha_log2: float
    allow_simulator: bool
    required_before_keygen: tuple[str, ...]
    seed_required: bool
    allow_seed_unsupported: bool
    witness_quorum: int
    manufacturer_roots: tuple[Path, ...]
    min_serial_bits: int = 64
    firmware: FirmwarePolicy = field(default_factory=FirmwarePolicy)  # accepted device firmware (USB devices)


def _key_text(value: str, where: str, base: Path) -> str:
    """A note verifier key given inline or as a file path relative to the policy, checked now: a wrong key is a
    policy error naming ``where``, not a failed ceremony later."""
    from transparency.errors import AuditError
    from transparency.note import Verifier
    text = value
    if not ("+" in value and not value.endswith((".pub", ".vkey"))):
        p = _rel(base, value)
        try:
            text = p.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(where, f"cannot read key file {p}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        Verifier.parse(text)
    except (AuditError, ValueError) as exc:
        raise ConfigError(where, f"is not a note verifier key ({exc})") from None
    return text


def _firmware_policy(af: Fields, base: Path) -> FirmwarePolicy:
    """attestation.firmware: {allowed_sha256: [...], transparency_log: {origin, key, witnesses, quorum}}."""
    ff = af.sub("firmware", {})
    allowed = ff.strings("allowed_sha256", [])
    for i, d in enumerate(allowed):
        if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
            raise ConfigError(f"{ff.p('allowed_sha256')}[{i}]", "must be a SHA-256 digest in lower-case hex")
    tf = ff.sub("transparency_log", {})
    log_key, origin, quorum = "", "", 0
    witnesses: tuple[str, ...] = ()
    if ff.has("transparency_log"):
        origin = tf.text("origin")
        log_key = _key_text(tf.text("key"), tf.p("key"), base)
        witnesses = tuple(_key_text(w, f"{tf.p('witnesses')}[{i}]", base)
                          for i, w in enumerate(tf.strings("witnesses", [])))
        quorum = tf.integer("quorum", len(witnesses), lo=0, hi=16)
        if quorum > len(witnesses):
            raise ConfigError(tf.p("quorum"), f"is {quorum} but only {len(witnesses)} witness keys are named")
    tf.done()
    ff.done()
    return FirmwarePolicy(frozenset(allowed), origin, log_key, witnesses, quorum)


def _err(exc: ConfigError, origin: Path) -> ScriptError:
    """The error naming ``origin`` with the line and column of its YAML path."""
    try:
        where = marks(read_text(origin))
    except ConfigError:
        where = {}
    return ScriptError.from_config(exc.in_file(str(origin), where))


def _rel(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base.parent / p).resolve()


def _step(value: Any, path: str, registry: Registry) -> Step:
    f = Fields(value, path)
    sid = f.text("id")
    if not sid or not sid.replace("-", "").replace("_", "").isalnum() or not sid.isascii():
        raise ConfigError(f.p("id"), "must be letters, digits, '-' or '_'")
    kind = f.text("type", choices=tuple(registry))
    params = registry[kind].parse(f)
    f.done()
    return Step(sid, kind, params, path, tuple(registry[kind].outputs(params)))


def load_script(path: str | Path, output: str | Path | None = None, *, registry: Registry) -> Script:
    """A ceremony script, parsed strictly; ``registry`` maps each step type to its module (ceremony.steps)."""
    p = Path(path).resolve()
    try:
        root = Fields(load_yaml(p), "")
        version = root.integer("version")
        if version != 1:
            raise ConfigError("version", f"unsupported version {version}; this release reads version 1")
        ceremony = root.text("ceremony")
        if not ceremony or not all(ch.isalnum() or ch in "-._" for ch in ceremony):
            raise ConfigError("ceremony", "must be letters, digits, '-', '.' or '_' (it names the log's origin)")
        desc = check_plain(root.text("description", ""), "description")
        policy = _rel(p, root.text("policy"))
        profiles = _rel(p, root.text("profiles"))
        out = Path(output).resolve() if output else _rel(p, root.text("output"))
        if output:
            root.raw("output", None)
        ent = root.text("entropy_config", None)
        rf = root.sub("roles")
        roles = {k: check_plain(rf.text(k), rf.p(k)) for k in list(root.raw("roles", {}) or {})}
        rf.done()
        witnesses = tuple(root.items("witnesses", []))
        for i, w in enumerate(witnesses):
            if not isinstance(w, str) or not w:
                raise ConfigError(f"witnesses[{i}]", "must be a witness key name")
            check_plain(w, f"witnesses[{i}]")
        raw_steps = root.items("steps")
        if not raw_steps:
            raise ConfigError("steps", "must list at least one step")
        steps = tuple(_step(v, f"steps[{i}]", registry) for i, v in enumerate(raw_steps))
        root.done()
    except ConfigError as exc:
        raise _err(exc, p) from None
    seen: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for s in steps:
        if s.id in seen:
            raise _err(ConfigError(f"{s.path}.id", f"{s.id!r} repeats {seen[s.id]}.id"), p)
        for name, refs in registry[s.type].refs(s.params).items():
            for ref in refs:
                if ref not in seen:
                    raise _err(ConfigError(f"{s.path}.{name}", f"names step {ref!r}, which does not come before it"),
                               p)
        seen[s.id] = s.path
        for o in s.outputs():
            if o in outputs:
                raise _err(ConfigError(f"{s.path}.output", f"{o!r} is also written by {outputs[o]}"), p)
            outputs[o] = s.path
    return Script(p, ceremony, desc, policy, profiles, out, _rel(p, ent) if ent else None, roles, witnesses, steps)


def load_profile(path: Path, name: str) -> Profile:
    try:
        root = Fields(load_yaml(path), "")
        if root.integer("version") != 1:
            raise ConfigError("version", "must be 1")
        pf = root.sub("profiles")
        names = list(root.raw("profiles") or {})
        if name not in names:
            raise ConfigError("profiles", f"has no profile {name!r} (profiles: {', '.join(names)})")
        for other in names:
            if other != name:
                pf.raw(other)
        f = pf.sub(name)
        module = f.text("module")
        token = f.text("token_label")
        pin_f = f.sub("pin")
        src = pin_f.text("source", choices=("prompt", "file", "env"))
        value = ""
        if src == "env":
            value = pin_f.text("variable")
        elif src == "file":
            value = str(_rel(path, pin_f.text("path")))
        pin_f.done()
        envf = f.sub("env", {})
        env = {k: str(_rel(path, envf.text(k))) if k.endswith("_CONF") else envf.text(k)
               for k in list(f.raw("env", {}) or {})}
        envf.done()
        lk = f.sub("log_key")
        log_label = lk.text("hsm_label", "")
        log_file_name = lk.text("file", None)
        log_file = str(_rel(path, log_file_name)) if log_file_name is not None else ""
        lk.done()
        if bool(log_label) == bool(log_file):
            raise ConfigError(f.p("log_key"), "must name exactly one of hsm_label or file")
        wk = f.sub("witness_keys", {})
        witness_keys = {k: str(_rel(path, wk.text(k))) for k in list(f.raw("witness_keys", {}) or {})}
        wk.done()
        policy_name = f.text("witness_policy", None)
        witness_policy = str(_rel(path, policy_name)) if policy_name is not None else ""
        prefix = f.text("log_url_prefix", "")
        if prefix and (prefix.startswith(("http://", "https://")) or any(c.isspace() or c == "+" for c in prefix)
                       or not prefix.isascii() or "/" not in prefix.strip("/") and "." not in prefix):
            raise ConfigError(f.p("log_url_prefix"), "must be a URL prefix without scheme, such as "
                                                     "logs.example.org/qrng (no spaces or '+')")
        history = tuple(str(_rel(path, h)) for h in f.strings("attestation_history", []))
        f.done()
        pf.done()
        root.done()
    except ConfigError as exc:
        raise _err(exc, path) from None
    return Profile(name, module, token, PinSource(src, value), env, log_label, log_file, witness_keys,
                   witness_policy, prefix, history)


def load_policy(path: Path, *, registry: Registry) -> Policy:
    try:
        root = Fields(load_yaml(path), "")
        if root.integer("version") != 1:
            raise ConfigError("version", "must be 1")
        name = root.text("name")
        keys = []
        for i, k in enumerate(root.items("allowed_keys")):
            kf = Fields(k, f"allowed_keys[{i}]")
            kind = kf.text("type", choices=("rsa", "ec", "ed25519"))
            entry: dict[str, Any] = {"type": kind}
            if kind == "rsa":
                entry["sizes"] = tuple(kf.integers("sizes", 2048, 16384))
            elif kind == "ec":
                curves = tuple(kf.strings("curves"))
                bad = [c for c in curves if c not in CURVES]
                if bad:
                    raise ConfigError(kf.p("curves"), f"unknown curve {bad[0]!r}")
                entry["curves"] = curves
            kf.done()
            keys.append(entry)
        cf = root.sub("certificates")
        profiles = {}
        for pname in list(root.raw("certificates") or {}):
            pf = cf.sub(pname)
            ca = pf.flag("ca", True)
            eku = tuple(pf.strings("extended_key_usage", []))
            for i, u in enumerate(eku):
                if u not in EKU_NAMES:
                    raise ConfigError(pf.p(f"extended_key_usage[{i}]"),
                                      f"unknown usage {u!r} ({', '.join(EKU_NAMES)})")
            if eku and ca:
                raise ConfigError(pf.p("extended_key_usage"), "is for end-entity profiles (ca: false)")
            profiles[pname] = CertProfile(pf.integer("max_validity_days", lo=1, hi=36500),
                                          pf.integer("path_length", None, lo=0, hi=10), ca, eku)
            pf.done()
        cf.done()
        ef = root.sub("entropy")
        min_claimed = ef.number("min_claimed_min_entropy", 0.5, lo=0.0, hi=8.0)
        min_est = ef.number("min_estimated_min_entropy", None, lo=0.0, hi=8.0)
        shortfall = ef.number("max_estimate_shortfall", 0.0, lo=0.0, hi=8.0)
        max_alpha = ef.number("max_alpha_log2", -20, lo=-64, hi=-1)
        allow_sim = ef.flag("allow_simulator", False)
        ef.done()
        req = tuple(root.strings("required_before_keygen", []))
        for i, r in enumerate(req):
            if r not in registry:
                raise ConfigError(f"required_before_keygen[{i}]", f"unknown step type {r!r}")
        sf = root.sub("seed_hsm", {})
        seed_required = sf.flag("required", False)
        allow_unsup = sf.flag("allow_unsupported", True)
        sf.done()
        wf = root.sub("witnesses", {})
        quorum = wf.integer("quorum", 0, lo=0, hi=16)
        wf.done()
        af = root.sub("attestation", {})
        roots = tuple(_rel(path, r) for r in af.strings("manufacturer_roots", []))
        firmware = _firmware_policy(af, path)
        af.done()
        serial_bits = root.integer("min_serial_bits", 64, lo=64, hi=159)
        root.done()
    except ConfigError as exc:
        raise _err(exc, path) from None
    return Policy(path, name, tuple(keys), profiles, min_claimed, min_est, shortfall, max_alpha, allow_sim, req,
                  seed_required, allow_unsup, quorum, roots, serial_bits, firmware)


# --- the plan's record (ceremony.plan makes it; the step kinds read it) ----------------------------------------
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
