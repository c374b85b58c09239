"""A USB QRNG read through pyusb: bulk reads from one IN endpoint.

The device is found by vendor and product ID (and optionally serial). Samples are bytes; the
claimed min-entropy comes from configuration (the device's data sheet), never assumed.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, SourceError, SourceRemoved
from .base import Samples, SourceInfo

__all__ = ["UsbSource"]


class UsbSource:
    def __init__(self, vendor_id: int, product_id: int, endpoint: int = 0x81, claimed_min_entropy: float = 1.0,
                 bits_per_sample: int = 8, serial: str | None = None, quantum: bool = True,
                 timeout_ms: int = 2000) -> None:
        if not 0 < claimed_min_entropy <= bits_per_sample:
            raise ConfigError("source.claimed_min_entropy", f"must be in (0, {bits_per_sample}]")
        try:
            import usb.core
        except ImportError as exc:  # pragma: no cover - pyusb is a dependency
            raise SourceError("pyusb is not installed") from exc
        kwargs = {"idVendor": vendor_id, "idProduct": product_id}
        try:
            found = list(usb.core.find(find_all=True, **kwargs))
        except usb.core.NoBackendError as exc:
            raise SourceRemoved("no libusb backend is available to reach the USB device") from exc
        if serial is not None:
            found = [d for d in found if getattr(d, "serial_number", None) == serial]
        if not found:
            raise SourceRemoved(f"USB device {vendor_id:04x}:{product_id:04x} not found")
        self._dev = found[0]
        self._usb = usb
        self._endpoint = endpoint
        self._timeout = timeout_ms
        model = f"USB QRNG {vendor_id:04x}:{product_id:04x}"
        sn = str(getattr(self._dev, "serial_number", "") or "")
        self._info = SourceInfo(
            kind="usb", identity=f"usb:{vendor_id:04x}:{product_id:04x}:{sn}", bits_per_sample=bits_per_sample,
            claimed_min_entropy=claimed_min_entropy, simulator=False, quantum=quantum, model=model, serial=sn,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def read(self, n: int) -> Samples:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._dev.read(self._endpoint, min(65536, n - len(buf)), timeout=self._timeout)
            except self._usb.core.USBError as exc:
                if getattr(exc, "errno", None) == 19:
                    raise SourceRemoved(f"{self._info.identity} was removed") from exc
                raise SourceError(f"{self._info.identity}: bulk read failed: {exc}") from exc
            if not len(chunk):
                raise SourceError(f"{self._info.identity}: empty read")
            buf += bytes(chunk)
        out = np.frombuffer(bytes(buf[:n]), dtype=np.uint8)
        if self._info.bits_per_sample < 8:
            out = out & np.uint8((1 << self._info.bits_per_sample) - 1)
        return out

    def close(self) -> None:
        self._usb.util.dispose_resources(self._dev)
