"""A software model of a vacuum-fluctuation (homodyne) QRNG, with fault injection.

This is a SIMULATOR. It models the *shape* of such a device (Gaussian shot noise digitised by an ADC
with gain and offset) so the pipeline, the PKCS#11 module and ceremonies can be rehearsed; its noise
comes from the operating system's generator (or from a seeded PRNG for reproducible tests). It is
labelled a simulator everywhere its identity appears and is never presented as a quantum source.

Faults follow the failure-mode table F1-F7 of the QRNG operations guide, plus stuck-at:

=================  ====  =====================================================
kind               id    effect from ``start`` (a sample index) on
=================  ====  =====================================================
low_entropy        F1    noise standard deviation multiplied by ``factor``
bias_drift         F2    offset ramps by ``rate`` LSB per sample
throughput_drop    F3    delivery limited to ``rate`` samples per second
repeating_pattern  F4    output repeats a period-``period`` pattern
tamper             F5    attestation statements no longer verify
saturation         F6    gain multiplied by ``factor`` (clips at full scale)
supply_failure     F7    reads raise SourceError (no samples)
stuck_at           --    every sample equals ``value``
=================  ====  =====================================================
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from ..errors import ConfigError, SourceError
from .base import Samples, SourceInfo
from .model import FAULT_KINDS, Fault, SimulatorConfig

__all__ = ["CLAIM_MARGIN", "FAULT_KINDS", "Fault", "SimulatorConfig", "SimulatorSource", "model_min_entropy"]

CLAIM_MARGIN = 2.5  # bits below the model's min-entropy, then rounded down to a half bit

def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def model_min_entropy(adc_bits: int, sigma: float, offset: float) -> float:
    """Min-entropy per sample of round(offset + sigma*N(0,1)) clipped to the ADC range: -log2 max_k P(k)."""
    top = (1 << adc_bits) - 1
    pmax = 0.0
    for k in range(top + 1):
        lo = -math.inf if k == 0 else (k - 0.5 - offset) / sigma
        hi = math.inf if k == top else (k + 0.5 - offset) / sigma
        p = (1.0 if hi == math.inf else _phi(hi)) - (0.0 if lo == -math.inf else _phi(lo))
        pmax = max(pmax, p)
    return -math.log2(pmax)


class SimulatorSource:
    """Simulated homodyne QRNG. See the module docstring for the fault table."""

    def __init__(self, config: SimulatorConfig | None = None, claimed_min_entropy: float | None = None) -> None:
        self.config = config or SimulatorConfig()
        c = self.config
        self._rng = np.random.Generator(np.random.PCG64(c.seed)) if c.seed is not None else None
        self._pos = 0
        self._pattern: Samples | None = None
        self._closed = False
        model_h = model_min_entropy(c.adc_bits, c.noise_rms * c.gain, c.offset)
        # Like a real device, claim less than the model gives: SP 800-90B's cutoffs assume the claim, and a
        # claim equal to the true min-entropy makes RCT false alarms frequent at high sample rates.
        claimed = (max(0.5, math.floor((model_h - CLAIM_MARGIN) * 2) / 2) if claimed_min_entropy is None
                   else claimed_min_entropy)
        if not 0 < claimed <= c.adc_bits:
            raise ConfigError("source.claimed_min_entropy", f"must be in (0, {c.adc_bits}]")
        self.model_min_entropy = model_h
        self._info = SourceInfo(
            kind="simulator",
            identity=f"simulator:homodyne-model:{c.serial}",
            bits_per_sample=c.adc_bits,
            claimed_min_entropy=claimed,
            simulator=True,
            quantum=False,
            model=f"QRNG-SIM homodyne model {c.adc_bits}-bit",
            serial=c.serial,
            firmware="sim-1.0",
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    @property
    def position(self) -> int:
        """Index of the next sample to be produced."""
        return self._pos

    @property
    def tampered(self) -> bool:
        """True once an F5 tamper fault is active: attestation must then fail to verify."""
        return any(f.kind == "tamper" and self._pos >= f.start for f in self.config.faults)

    def _normal(self, n: int) -> np.ndarray:
        if self._rng is not None:
            return self._rng.standard_normal(n)
        # Box-Muller over uniforms drawn from the OS generator.
        half = (n + 1) // 2
        u = np.frombuffer(os.urandom(16 * half), dtype=np.uint64).reshape(2, half)
        u1 = ((u[0] >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)
        u2 = (u[1] >> np.uint64(11)).astype(np.float64) * (2.0 * math.pi / 9007199254740992.0)
        r = np.sqrt(-2.0 * np.log(u1))
        out = np.empty(2 * half)
        out[:half] = r * np.cos(u2)
        out[half:] = r * np.sin(u2)
        return out[:n]

    def read(self, n: int) -> Samples:
        if self._closed:
            raise SourceError("simulator is closed")
        if n < 0:
            raise ValueError("n must be >= 0")
        c = self.config
        start, end = self._pos, self._pos + n
        for f in c.faults:
            if f.kind == "supply_failure" and end > f.start:
                raise SourceError(f"supply failure (F7 injected at sample {f.start}): no samples produced")
        idx = np.arange(start, end, dtype=np.int64)
        sigma = np.full(n, c.noise_rms * c.gain)
        offset = np.full(n, c.offset)
        for f in c.faults:
            active = idx >= f.start
            if f.kind == "low_entropy" or f.kind == "saturation":
                sigma[active] *= f.param("factor")
            elif f.kind == "bias_drift":
                offset[active] += f.param("rate") * (idx[active] - f.start)
        top = (1 << c.adc_bits) - 1
        x = np.rint(offset + sigma * self._normal(n))
        out = np.clip(x, 0, top).astype(np.uint8)
        for f in c.faults:
            active = idx >= f.start
            if not active.any():
                continue
            if f.kind == "repeating_pattern":
                period = int(f.param("period"))
                if self._pattern is None:
                    self._pattern = out[active][:period].copy()
                    if self._pattern.size < period:  # pattern straddles reads: pad from fresh noise
                        extra = np.clip(np.rint(c.offset + c.noise_rms * c.gain * self._normal(period)), 0, top)
                        self._pattern = np.concatenate([self._pattern, extra.astype(np.uint8)])[:period]
                out[active] = self._pattern[(idx[active] - f.start) % period]
            elif f.kind == "stuck_at":
                out[active] = int(f.param("value")) & top
            elif f.kind == "throughput_drop":
                time.sleep(int(active.sum()) / f.param("rate"))
        self._pos = end
        return out

    def close(self) -> None:
        self._closed = True
