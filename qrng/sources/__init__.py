"""Entropy sources and the factory that builds one from configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import SourceConfig
    from .base import Samples, Source, SourceInfo

__all__ = ["Samples", "Source", "SourceInfo", "open_source", "SOURCE_KINDS"]

SOURCE_KINDS = {
    "simulator": "software model of a homodyne QRNG with fault injection (SIMULATOR, not a device)",
    "file": "replay of a raw-sample file (one sample per byte, or packed bits)",
    "device": "a character device such as /dev/hwrng (non-quantum unless configured quantum: true)",
    "usb": "a USB QRNG through pyusb: the qrng-ceremony USB protocol, or raw mode for bulk-endpoint RNGs "
           "(or the USB EMULATOR, a software device)",
}


def __getattr__(name: str) -> Any:
    """Samples, Source and SourceInfo from .base on first use: reading a configuration (qrng.sources.model) does
    not need them, and the in-process PKCS#11 module's C_Initialize reads one (its cold start)."""
    if name in ("Samples", "Source", "SourceInfo"):
        from . import base
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_source(cfg: SourceConfig) -> Source:
    if cfg.type == "simulator":
        from .simulator import SimulatorSource
        return SimulatorSource(cfg.simulator, cfg.claimed_min_entropy)
    if cfg.type == "file":
        from .file import FileSource
        assert cfg.claimed_min_entropy is not None
        return FileSource(cfg.path, cfg.bits_per_sample, cfg.claimed_min_entropy, cfg.packed, cfg.loop, cfg.stream,
                          cfg.read_timeout)
    if cfg.type == "device":
        from .device import DeviceSource
        assert cfg.claimed_min_entropy is not None
        return DeviceSource(cfg.path, cfg.claimed_min_entropy, cfg.quantum, read_timeout=cfg.read_timeout)
    from .usb import UsbSource
    return UsbSource(cfg.vendor_id, cfg.product_id, cfg.endpoint, cfg.claimed_min_entropy, cfg.bits_per_sample,
                     cfg.serial, cfg.quantum, int(cfg.read_timeout * 1000), cfg.interface, cfg.raw,
                     cfg.detach_kernel_driver, [cfg.emulator] if cfg.emulator else None)
