"""Which PKCS#11 module and token to use, and where the PIN comes from (parsed from a ceremony profile file by
ceremony.model.load_profile; every user of an HSM key names one)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HsmProfile", "PinSource"]


@dataclass(frozen=True)
class PinSource:
    source: str  # prompt | file | env
    value: str = ""  # the environment variable, or the file


@dataclass(frozen=True)
class HsmProfile:
    name: str
    module: str
    token_label: str
    pin: PinSource
    env: dict[str, str] = field(default_factory=dict)  # set before the module is loaded (SOFTHSM2_CONF, ...)
