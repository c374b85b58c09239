"""A USB QRNG through pyusb: the qrng-ceremony USB protocol v1 (docs/usb-protocol.md), or raw mode for existing
bulk-endpoint RNGs (ChaosKey, Alea and the like).

Selection by VID, PID and serial. A device whose interface says class 0xFF, subclass 0x51, protocol 0x01 speaks
the protocol: its identity, bits per sample and claimed min-entropy come from GET_INFO (the configuration may only
claim less), and it can attest itself and sign reads. Any other device is read in raw mode: interface and
endpoint from the configuration (default: interface 0, its first bulk IN endpoint), claimed min-entropy from the
configuration (required), no attestation.

On a real bus: the kernel driver is detached only when configured to (and attached again on close), the
interface is claimed and released, reads time out, a stalled endpoint is cleared once (CLEAR_FEATURE), short and
zero-length packets are read on, a vanished device is :class:`SourceRemoved` (the PKCS#11 module then answers
CKR_DEVICE_REMOVED and shows the token not present until the device is back), and a permission error names the
udev rule to install (contrib/udev/60-qrng-ceremony.rules).
"""

from __future__ import annotations

import array
import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DeviceHealthFailure, SourceError, SourceRemoved
from . import usbproto as P
from .base import Samples, SourceInfo

__all__ = ["UDEV_RULE", "UsbDevice", "UsbSource", "list_devices"]

UDEV_RULE = "contrib/udev/60-qrng-ceremony.rules"
_CHUNK = 1 << 20          # bytes asked of the bulk endpoint per read
_MAX_ZLP = 64             # zero-length packets in a row before a read is a failure


def _usb() -> Any:
    try:
        import usb.core
        import usb.util
    except ImportError as exc:  # pragma: no cover - pyusb is a dependency
        raise SourceError("pyusb is not installed") from exc
    return usb


def backend_for(emulator: list[str] | None) -> Any:
    """The pyusb backend: libusb (the default), or the EMULATOR's for the given state folders."""
    if emulator:
        from .usbemu import EmulatorBackend
        for p in emulator:
            if not (Path(p) / "device.json").is_file():
                raise ConfigError("source.emulator", f"{p} is not a USB EMULATOR state folder (make one with "
                                  "qrng usb emulator init)")
        return EmulatorBackend([Path(p) for p in emulator])
    return None


def _errno(exc: BaseException) -> int | None:
    return getattr(exc, "errno", None)


@dataclass(frozen=True)
class UsbDevice:
    """An attached device as `qrng sources` lists it."""

    vendor_id: int
    product_id: int
    bus: int | None
    address: int | None
    serial: str
    product: str
    protocol: bool

    def line(self) -> str:
        mode = "qrng-ceremony USB protocol v1" if self.protocol else "raw mode only (bulk IN)"
        return (f"{self.vendor_id:04x}:{self.product_id:04x} bus {self.bus} addr {self.address} "
                f"serial {self.serial or '?'} {self.product or ''}: {mode}").replace("  ", " ")


def _speaks_protocol(dev: Any) -> bool:
    try:
        for cfg in dev:
            for intf in cfg:
                if (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (
                        P.INTERFACE_CLASS, P.INTERFACE_SUBCLASS, P.INTERFACE_PROTOCOL):
                    return True
    except Exception:  # noqa: BLE001 - a descriptor we cannot read: not a protocol device
        return False
    return False


def list_devices(vendor_id: int | None = None, product_id: int | None = None, emulator: list[str] | None = None,
                 ) -> list[UsbDevice]:
    """Attached USB devices (optionally of one VID/PID) with their identity and whether they speak the protocol.
    Strings a device will not give without permission are shown as '?'."""
    usb = _usb()
    kwargs: dict[str, Any] = {}
    if vendor_id is not None:
        kwargs["idVendor"] = vendor_id
    if product_id is not None:
        kwargs["idProduct"] = product_id
    try:
        found = list(usb.core.find(find_all=True, backend=backend_for(emulator), **kwargs))
    except usb.core.NoBackendError:
        return []
    out = []
    for d in found:
        def text(attr: str, dev: Any = d) -> str:
            try:
                return str(getattr(dev, attr) or "")
            except (ValueError, usb.core.USBError, NotImplementedError):
                return "?"
        out.append(UsbDevice(d.idVendor, d.idProduct, d.bus, d.address, text("serial_number"), text("product"),
                             _speaks_protocol(d)))
    return out


class UsbSource:
    """A USB QRNG. ``claimed_min_entropy`` is required in raw mode; for a protocol device it may only lower the
    device's own claim."""

    def __init__(self, vendor_id: int, product_id: int, endpoint: int | None = None,
                 claimed_min_entropy: float | None = None, bits_per_sample: int = 8, serial: str | None = None,
                 quantum: bool = True, timeout_ms: int = 2000, interface: int = 0, raw: bool = False,
                 detach_kernel_driver: bool = False, emulator: list[str] | None = None) -> None:
        self._usb = _usb()
        self._want = (vendor_id, product_id, serial)
        self._endpoint_cfg = endpoint
        self._claim_cfg = claimed_min_entropy
        self._bits_cfg = bits_per_sample
        self._quantum = quantum
        self._timeout = timeout_ms
        self._intf = interface
        self._raw = raw
        self._detach = detach_kernel_driver
        self._emulator = emulator
        self._detached = False
        self._buf = array.array("B", bytes(_CHUNK))
        self._dev: Any = None
        self.device_info: P.DeviceInfo | None = None
        self._open()

    # --- opening ------------------------------------------------------------------------------------------------
    def _find(self) -> Any:
        usb = self._usb
        vid, pid, serial = self._want
        try:
            found = list(usb.core.find(find_all=True, idVendor=vid, idProduct=pid, backend=backend_for(self._emulator)))
        except usb.core.NoBackendError as exc:
            raise SourceRemoved("no libusb backend is available to reach the USB device (install libusb-1.0-0)") \
                from exc
        if serial is not None:
            found = [d for d in found if self._serial_of(d) == serial]
        if not found:
            which = f"{vid:04x}:{pid:04x}" + (f" serial {serial}" if serial else "")
            raise SourceRemoved(f"USB device {which} not found")
        return found[0]

    def _serial_of(self, dev: Any) -> str:
        try:
            return str(dev.serial_number or "")
        except ValueError:  # pyusb: the string could not be read (no permission)
            raise SourceError(self._permission_text(dev)) from None
        except self._usb.core.USBError as exc:
            if _errno(exc) == errno.EACCES:
                raise SourceError(self._permission_text(dev)) from exc
            return ""

    @staticmethod
    def _permission_text(dev: Any) -> str:
        return (f"no permission to open USB device {dev.idVendor:04x}:{dev.idProduct:04x} (bus {dev.bus} address "
                f"{dev.address}): install the udev rule {UDEV_RULE} (sudo cp {UDEV_RULE} /etc/udev/rules.d/ && "
                "sudo udevadm control --reload && sudo udevadm trigger), then re-plug the device")

    def _open(self) -> None:
        usb = self._usb
        dev = self._find()
        try:
            if dev.is_kernel_driver_active(self._intf):
                if not self._detach:
                    raise SourceError(f"a kernel driver is bound to interface {self._intf} of "
                                      f"{dev.idVendor:04x}:{dev.idProduct:04x} (chaoskey or similar); set "
                                      "source.detach_kernel_driver: true to detach it while qrng-ceremony reads")
                dev.detach_kernel_driver(self._intf)
                self._detached = True
            usb.util.claim_interface(dev, self._intf)
        except NotImplementedError:
            pass  # the backend cannot tell: proceed
        except usb.core.USBError as exc:
            if _errno(exc) == errno.EACCES:
                raise SourceError(self._permission_text(dev)) from exc
            if _errno(exc) == errno.ENODEV:
                raise SourceRemoved(f"USB device {dev.idVendor:04x}:{dev.idProduct:04x} was removed") from exc
            if _errno(exc) == errno.EBUSY:
                raise SourceError(f"interface {self._intf} of {dev.idVendor:04x}:{dev.idProduct:04x} is claimed by "
                                  "another program") from exc
            raise SourceError(f"USB device {dev.idVendor:04x}:{dev.idProduct:04x}: {exc}") from exc
        self._dev = dev
        protocol = not self._raw and _speaks_protocol(dev)
        self._endpoint = self._endpoint_cfg or self._first_bulk_in(dev)
        if protocol:
            self._negotiate()
            info = self.device_info = P.DeviceInfo.decode(self._vendor_in(P.REQ.GET_INFO, 0, 512))
            claim = info.claimed_min_entropy if self._claim_cfg is None else min(self._claim_cfg,
                                                                                 info.claimed_min_entropy)
            bits, model, serial = info.bits_per_sample, f"{info.vendor} {info.model}", info.serial
            firmware = "{}.{}.{}".format(*info.firmware_version)
            emulator = info.emulator
        else:
            if self._claim_cfg is None:
                raise ConfigError("source.claimed_min_entropy", "is required for a USB device in raw mode (the "
                                  "device's data sheet); it does not speak the qrng-ceremony protocol")
            claim, bits = self._claim_cfg, self._bits_cfg
            serial = self._serial_of(dev)
            emulator = bool(self._emulator)  # on the EMULATOR's bus: never presented as a device, raw or not
            model = f"USB {'EMULATOR' if emulator else 'RNG'} {dev.idVendor:04x}:{dev.idProduct:04x} (raw mode)"
            firmware = ""
        if not 0 < claim <= bits:
            raise ConfigError("source.claimed_min_entropy", f"must be in (0, {bits}]")
        kind = "usb"
        self._info = SourceInfo(kind=kind, identity=f"usb:{dev.idVendor:04x}:{dev.idProduct:04x}:{serial}",
                                bits_per_sample=bits, claimed_min_entropy=claim, simulator=emulator,
                                quantum=self._quantum and not emulator, model=model, serial=serial,
                                firmware=firmware)
        self.protocol = protocol

    def _first_bulk_in(self, dev: Any) -> int:
        usb = self._usb
        try:
            intf = dev.get_active_configuration()[(self._intf, 0)]
        except (usb.core.USBError, KeyError, IndexError) as exc:
            raise SourceError(f"USB device {dev.idVendor:04x}:{dev.idProduct:04x} has no interface {self._intf}") \
                from exc
        for ep in intf:
            if usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_IN and \
                    usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK:
                return int(ep.bEndpointAddress)
        raise SourceError(f"interface {self._intf} of {dev.idVendor:04x}:{dev.idProduct:04x} has no bulk IN endpoint")

    def _negotiate(self) -> None:
        raw = self._vendor_in(P.REQ.GET_VERSION, P.VERSION, 4)
        if len(raw) != 4 or int.from_bytes(raw[:2], "little") != P.VERSION:
            raise SourceError(f"{self._where()}: no common protocol version (device answered {raw.hex()})")

    # --- requests -----------------------------------------------------------------------------------------------
    def _where(self) -> str:
        vid, pid, serial = self._want
        return f"USB device {vid:04x}:{pid:04x}" + (f" serial {serial}" if serial else "")

    def _failure(self, what: str, exc: Exception) -> SourceError:
        code = _errno(exc)
        if code in (errno.ENODEV, errno.ESHUTDOWN) or "No such device" in str(exc):
            return SourceRemoved(f"{self._where()} was removed ({what})")
        if code == errno.EPIPE:
            return SourceError(f"{self._where()}: {what} stalled (the device refused the request)")
        if isinstance(exc, self._usb.core.USBTimeoutError) or code == errno.ETIMEDOUT:
            return SourceError(f"{self._where()}: {what} timed out after {self._timeout} ms")
        return SourceError(f"{self._where()}: {what} failed: {exc}")

    def _vendor_in(self, request: int, value: int, length: int) -> bytes:
        try:
            return bytes(self._dev.ctrl_transfer(P.RT_IN, request, value, self._intf, length, timeout=self._timeout))
        except self._usb.core.USBError as exc:
            raise self._failure(f"vendor request {request:#04x}", exc) from exc

    def _vendor_out(self, request: int, data: bytes) -> None:
        try:
            self._dev.ctrl_transfer(P.RT_OUT, request, 0, self._intf, data, timeout=self._timeout)
        except self._usb.core.USBError as exc:
            raise self._failure(f"vendor request {request:#04x}", exc) from exc

    def _require_protocol(self) -> None:
        if not self.protocol:
            raise SourceError(f"{self._where()} is read in raw mode: it cannot attest itself or sign reads")

    def check(self) -> None:
        """Is the device still there, and (protocol mode) healthy by its own tests? SourceRemoved if it is gone,
        SourceError if it reports a latched health-test failure. Raw mode: a 512-byte read (discarded)."""
        if self._dev is None:
            raise SourceRemoved(f"{self._info.identity} is closed")
        if not self.protocol:
            self._bulk(512)
            return
        st = self.status()
        if not st.healthy:
            raise DeviceHealthFailure(f"{self._info.identity} reports a failure of its own health tests (status "
                                      f"flags {st.flags:#x}, {st.rct_failures} RCT, {st.apt_failures} APT): no "
                                      "output", st.rct_failures, st.apt_failures)

    def status(self) -> P.Status:
        self._require_protocol()
        return P.Status.decode(self._vendor_in(P.REQ.GET_STATUS, 0, P.STATUS_LEN))

    def chain(self) -> tuple[bytes, list[bytes]]:
        """The certificate chain blob (as the device signs its digest) and its DER certificates, device first."""
        self._require_protocol()
        blob = b""
        for block in range(64):
            part = self._vendor_in(P.REQ.GET_CERTS, block, P.CHAIN_BLOCK)
            blob += part
            if len(part) < P.CHAIN_BLOCK:
                return blob, P.decode_chain(blob)
        raise SourceError(f"{self._where()}: certificate chain longer than 64 KiB")

    def attest(self, nonce: bytes) -> tuple[P.Attestation, bytes]:
        """SET_NONCE then GET_ATTESTATION: the statement and the raw GET_INFO bytes it covers (verify with
        qrng.attestation.usb)."""
        self._require_protocol()
        if len(nonce) != P.NONCE_LEN:
            raise ValueError("the nonce must be 32 bytes")
        info = self._vendor_in(P.REQ.GET_INFO, 0, 512)
        self._vendor_out(P.REQ.SET_NONCE, nonce)
        return P.Attestation.decode(self._vendor_in(P.REQ.GET_ATTESTATION, 0, 512)), info

    def signed_read(self, nonce: bytes, n: int) -> P.SignedRead:
        self._require_protocol()
        self._vendor_out(P.REQ.SET_NONCE, nonce)
        return P.SignedRead.decode(self._vendor_in(P.REQ.SIGNED_READ, n, n + 128))

    # --- the sample stream ------------------------------------------------------------------------------------------
    @property
    def info(self) -> SourceInfo:
        return self._info

    def _bulk(self, size: int) -> int:
        usb = self._usb
        buf = self._buf if size == len(self._buf) else array.array("B", bytes(size))
        for attempt in (1, 2):
            try:
                n = self._dev.read(self._endpoint, buf, timeout=self._timeout)
                if buf is not self._buf:
                    memoryview(self._buf)[:n] = memoryview(buf)[:n]
                return int(n)
            except usb.core.USBTimeoutError as exc:
                raise SourceError(f"{self._info.identity}: no samples within {self._timeout} ms (read timeout)") \
                    from exc
            except usb.core.USBError as exc:
                if _errno(exc) == errno.EPIPE and attempt == 1:
                    try:  # a halted endpoint: CLEAR_FEATURE(ENDPOINT_HALT) once, then read again
                        self._dev.clear_halt(self._endpoint)
                        continue
                    except usb.core.USBError as again:
                        raise self._failure("clearing a halted endpoint", again) from again
                raise self._failure("bulk read", exc) from exc
        raise SourceError(f"{self._info.identity}: the endpoint stalled again after it was cleared")

    def read(self, n: int) -> Samples:
        """Exactly ``n`` samples: bulk reads of up to 1 MiB, short packets read on, zero-length packets counted."""
        if self._dev is None:
            raise SourceRemoved(f"{self._info.identity} is closed")
        out = np.empty(n, dtype=np.uint8)
        src = np.frombuffer(self._buf, dtype=np.uint8)
        zlp = done = 0
        while done < n:
            left = n - done
            got = self._bulk(_CHUNK if left >= _CHUNK else max(512, left + (-left) % 512))
            if got == 0:
                zlp += 1
                if zlp >= _MAX_ZLP:
                    raise SourceError(f"{self._info.identity}: {_MAX_ZLP} zero-length packets in a row, no samples")
                continue
            zlp = 0
            take = min(got, left)
            out[done:done + take] = src[:take]
            done += take
        if self._info.bits_per_sample < 8:
            out = out & np.uint8((1 << self._info.bits_per_sample) - 1)
        return out

    def close(self) -> None:
        if self._dev is None:
            return
        usb = self._usb
        try:
            usb.util.release_interface(self._dev, self._intf)
            if self._detached:
                self._dev.attach_kernel_driver(self._intf)
        except (usb.core.USBError, NotImplementedError):
            pass  # gone already
        usb.util.dispose_resources(self._dev)
        self._dev = None

    def firmware_sha256(self) -> str:
        return self.device_info.firmware_sha256.hex() if self.device_info else ""
