"""The registry of ceremony step types: one module each. Adding a step type: write its module (see
base.StepKind) and add it to _MODULES; nothing else changes."""

from __future__ import annotations

import importlib

from .base import PlanView, Step, StepContext, StepKind, StepResult

__all__ = ["REGISTRY", "PlanView", "Step", "StepContext", "StepKind", "StepResult"]

_MODULES = ("attest_device", "health_check", "collect_entropy", "estimate_entropy", "seed_hsm", "generate_keypair",
            "self_signed_root", "csr", "import_csr", "issue_certificate", "crl", "export_public", "witness_signoff",
            "verify_outputs")

REGISTRY: dict[str, StepKind] = {}  # type: ignore[type-arg]
for _name in _MODULES:
    _kind = importlib.import_module(f"{__name__}.{_name}").KIND
    assert _kind.name == _name, f"step module {_name} registers {_kind.name}"
    REGISTRY[_name] = _kind
