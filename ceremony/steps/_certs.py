"""What the certificate steps share: a referenced key must come from a generate_keypair step, and a certificate
profile must exist in the policy and allow the validity asked for."""

from __future__ import annotations

from .base import PlanView, Step


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
