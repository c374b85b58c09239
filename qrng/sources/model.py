"""Configuration model of the simulator and its faults (no numpy: configuration parsing stays light)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["FAULT_KINDS", "Fault", "SimulatorConfig"]

FAULT_KINDS = {
    "low_entropy": "F1",
    "bias_drift": "F2",
    "throughput_drop": "F3",
    "repeating_pattern": "F4",
    "tamper": "F5",
    "saturation": "F6",
    "supply_failure": "F7",
    "stuck_at": "stuck-at",
}

_FAULT_PARAMS: dict[str, dict[str, float]] = {
    "low_entropy": {"factor": 0.05},
    "bias_drift": {"rate": 0.01},
    "throughput_drop": {"rate": 10000.0},
    "repeating_pattern": {"period": 4},
    "tamper": {},
    "saturation": {"factor": 40.0},
    "supply_failure": {},
    "stuck_at": {"value": 0},
}


# (lowest, highest, integer?) of each parameter; a zero rate or period is not a fault but a crash
_PARAM_RANGE: dict[str, tuple[float, float, bool]] = {
    "factor": (1e-6, 1e6, False), "rate": (1e-9, 1e9, False), "period": (1, 1 << 16, True), "value": (0, 255, True),
}


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` from FAULT_KINDS, active from sample index ``start``."""

    kind: str
    start: int = 0
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError("kind", f"unknown fault {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.start < 0:
            raise ConfigError("start", "must be >= 0")
        unknown = set(self.params) - set(_FAULT_PARAMS[self.kind])
        if unknown:
            raise ConfigError(self.kind, f"unknown parameter(s) {sorted(unknown)}")
        for name, v in self.params.items():
            lo, hi, integer = _PARAM_RANGE[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi or \
                    (integer and float(v) != int(v)):
                kind = "an integer" if integer else "a number"
                raise ConfigError(name, f"must be {kind} from {lo:g} to {hi:g} (got {v!r})")

    def param(self, name: str) -> float:
        return float(self.params.get(name, _FAULT_PARAMS[self.kind][name]))


@dataclass(frozen=True)
class SimulatorConfig:
    """Model parameters. sigma in ADC LSB is ``noise_rms * gain``."""

    adc_bits: int = 8
    noise_rms: float = 1.0
    gain: float = 40.0
    offset: float = 127.5
    seed: int | None = None
    serial: str = "SIM-0001"
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.adc_bits <= 8:
            raise ConfigError("adc_bits", "must be between 1 and 8")
        if self.noise_rms <= 0 or self.gain <= 0:
            raise ConfigError("gain", "noise_rms and gain must be positive")
