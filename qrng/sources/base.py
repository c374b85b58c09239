"""The one small interface every entropy source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass

__all__ = ["SourceInfo", "Source", "Samples"]

Samples = Any  # numpy.typing.NDArray[numpy.uint8]; kept lazy so configuration parsing stays light


@dataclass(frozen=True)
class SourceInfo:
    """What a source says about itself; shown wherever the source's identity is shown.

    Attributes:
        kind: "simulator", "file", "device" or "usb".
        identity: stable identity string (model, serial, path).
        bits_per_sample: 1..8; samples are delivered one per byte.
        claimed_min_entropy: claimed min-entropy per sample, bits (drives health cutoffs and extraction).
        simulator: True when the samples come from a software model, never from a physical device.
        quantum: True only for a physical quantum device configured as such.
        model: human-readable model string.
        serial: serial number or path.
        firmware: firmware version or empty.
    """

    kind: str
    identity: str
    bits_per_sample: int
    claimed_min_entropy: float
    simulator: bool
    quantum: bool
    model: str
    serial: str
    firmware: str = ""

    @property
    def label(self) -> str:
        """The label shown to people: a simulator says so, a non-quantum device says so."""
        if self.simulator:
            return f"SIMULATOR {self.model} (not a physical device)"
        if not self.quantum:
            return f"{self.model} (non-quantum source)"
        return self.model


@runtime_checkable
class Source(Protocol):
    """Reads raw samples in blocks. Raises SourceError / SourceRemoved; never returns short data silently."""

    @property
    def info(self) -> SourceInfo: ...

    def read(self, n: int) -> Samples:
        """Return exactly ``n`` samples (uint8, values < 2**bits_per_sample)."""
        ...

    def close(self) -> None: ...
