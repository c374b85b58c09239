"""What the certificate steps share: a referenced key must come from a generate_keypair step, a certificate
profile must exist in the policy and allow the validity asked for, and certificates and CRLs are logged and put
on paper the same way (subject, serial, validity, fingerprints)."""

from __future__ import annotations

from typing import Any

from .base import Fact, PlanView, Step, sha256_hex

_TIME = "%Y-%m-%dT%H:%M:%SZ"


def certificate_data(der: bytes) -> dict[str, Any]:
    """What the log records of an issued certificate beyond its TBS digest: validity and fingerprints (DER)."""
    import hashlib

    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    return {"not_before": cert.not_valid_before_utc.strftime(_TIME),
            "not_after": cert.not_valid_after_utc.strftime(_TIME), "fingerprint_sha256": sha256_hex(der),
            "fingerprint_sha1": hashlib.sha1(der).hexdigest()}


def crl_data(der: bytes) -> dict[str, Any]:
    from cryptography import x509
    crl = x509.load_der_x509_crl(der)
    nxt = crl.next_update_utc
    return {"this_update": crl.last_update_utc.strftime(_TIME), "next_update": nxt.strftime(_TIME) if nxt else None,
            "fingerprint_sha256": sha256_hex(der)}


def certificate_facts(d: dict[str, Any]) -> tuple[Fact, ...]:
    facts = [Fact("Subject", dn(d.get("subject", ""))), Fact("Serial number", d.get("serial", ""), digest=True)]
    if "issuer" in d:
        facts.append(Fact("Issuer", dn(d["issuer"])))
    if "not_before" in d:
        facts += [Fact("Valid from", d["not_before"]), Fact("Valid until", d["not_after"]),
                  Fact("SHA-256 fingerprint", colons(d["fingerprint_sha256"]), digest=True),
                  Fact("SHA-1 fingerprint", colons(d["fingerprint_sha1"]), digest=True)]
    facts.append(Fact("TBS SHA-256 (linted before signing)", d.get("tbs_sha256", ""), digest=True))
    findings = d.get("lint_findings") or []
    facts.append(Fact("pkilint", "no finding" if not findings else "; ".join(map(str, findings))))
    return tuple(facts)


def dn(name: str) -> str:
    """An RFC 4514 string as people read it: a space after each separating comma (escaped commas stay)."""
    import re
    return re.sub(r"(?<!\\),", ", ", name)


def colons(hexstr: str) -> str:
    """AB:CD:... as certificate viewers show fingerprints."""
    return ":".join(hexstr[i:i + 2] for i in range(0, len(hexstr), 2)).upper()


def key_ref_violations(step: Step, view: PlanView, *fields: str) -> list[str]:
    keys = view.keys()
    return [f"{step.path}.{name} must name an earlier generate_keypair step (got {getattr(step.params, name)!r})"
            for name in fields if getattr(step.params, name) not in keys]


def step_ref_violations(step: Step, view: PlanView, kinds: dict[str, tuple[str, ...]]) -> list[str]:
    v = []
    for name, allowed in kinds.items():
        ref = getattr(step.params, name)
        other = view.earlier.get(ref)
        if other is None or other.type not in allowed:
            v.append(f"{step.path}.{name} must name an earlier {' or '.join(allowed)} step (got {ref!r})")
    return v


def profile_violations(step: Step, view: PlanView) -> list[str]:
    p = step.params
    prof = view.policy.cert_profiles.get(p.profile)
    if prof is None:
        return [f"{step.path}.profile {p.profile!r} is not a certificate profile of policy {view.policy.name} "
                f"({', '.join(view.policy.cert_profiles)})"]
    if p.validity_days > prof.max_validity_days:
        return [f"{step.path}.validity_days {p.validity_days} exceeds the policy's {prof.max_validity_days} "
                f"for {p.profile}"]
    return []
