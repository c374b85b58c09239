"""The USB QRNG EMULATOR: a software device at the USB transfer level, as a pyusb backend, so the real driver
(usb.py) runs unchanged against it (``usb.core.find(backend=EmulatorBackend(...))``).

It is an EMULATOR, labelled as such everywhere: its identity, model and serial say EMULATOR, GET_INFO sets
FLAG_EMULATOR, its device certificate has the simulator flag, and it signs with a TEST-ONLY key. Its samples come
from the simulator's physics (a discretised Gaussian, the homodyne model; with faults, the simulator itself), and
its noise from the operating system's generator (or, for a reproducible measurement, from a fixed ``noise_seed``
in ``device.json``): it is never a quantum source.

State lives in a folder (``qrng usb emulator init --dir D``): ``device.json`` (identity), ``device.key`` and
``chain.pem`` (TEST-ONLY), ``firmware.bin``, ``counter`` (the signature counter, persisted so it never repeats,
with ``counter.lock`` held while it moves on) and ``control``, a small text file that other processes write to
plug, unplug and inject bus faults::

    plugged: yes|no
    fault: none|stall|timeout|short|zlp|silent|eio       (bulk IN endpoint)
    control_fault: none|stall                             (vendor requests)
    physics_fault: none|stuck_at|low_entropy              (the samples themselves)
    kernel_driver: none|bound                             (a kernel driver holds the interface, as chaoskey)
    permission: granted|denied                            (opening the device fails with EACCES: no udev rule)

The control file is read again whenever its modification time changes (checked at most every 20 ms).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import usb.backend

from ..atomic import atomic_write
from ..errors import UsageError
from . import usbproto as P

__all__ = ["EMULATOR_PID", "EMULATOR_VID", "EmulatedDevice", "EmulatorBackend", "read_control", "write_control"]

EMULATOR_VID = 0x1209  # pid.codes
EMULATOR_PID = 0x0001  # pid.codes test PID: for testing only, never shipped in a product
ENDPOINT = 0x81
PACKET = 512           # high-speed bulk max packet size
CONTROL_FIELDS = {"plugged": ("yes", "no"), "fault": ("none", "stall", "timeout", "short", "zlp", "silent", "eio"),
                  "control_fault": ("none", "stall"), "physics_fault": ("none", "stuck_at", "low_entropy"),
                  "kernel_driver": ("none", "bound"), "permission": ("granted", "denied")}


def read_control(folder: Path) -> dict[str, str]:
    """The emulator's control file as a dict (defaults: plugged, no fault); unknown keys or values are refused."""
    state = {"plugged": "yes", "fault": "none", "control_fault": "none", "physics_fault": "none",
             "kernel_driver": "none", "permission": "granted"}
    path = folder / "control"
    if path.exists():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not UTF-8 text (expected lines of KEY: VALUE)") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, _, value = (x.strip() for x in line.partition(":"))
            if key not in CONTROL_FIELDS or value not in CONTROL_FIELDS[key]:
                raise UsageError(f"{path}:{n}: {line.strip()!r}: expected one of "
                                 + "; ".join(f"{k}: {'|'.join(v)}" for k, v in CONTROL_FIELDS.items()))
            state[key] = value
    return state


def write_control(folder: Path, **changes: str) -> None:
    """Change the control file atomically (a reader never sees half a file)."""
    state = read_control(folder)
    for key, value in changes.items():
        if key not in CONTROL_FIELDS or value not in CONTROL_FIELDS[key]:
            raise UsageError(f"emulator control {key}: {value!r} is not one of {CONTROL_FIELDS.get(key)}")
        state[key] = value
    # all or nothing for the emulator that reads it; not fsync'd: a lost fault switch is set again by the test
    atomic_write(folder / "control", "".join(f"{k}: {v}\n" for k, v in state.items()).encode(), overwrite=True,
                 durable=False)


class _Physics:
    """The homodyne model's output distribution, sampled fast: a 65,536-entry table from 16-bit uniform noise
    to the ADC code (the model's CDF quantised to 1/65536), so the emulator is never what limits throughput."""

    def __init__(self, adc_bits: int = 8, sigma: float = 40.0, offset: float = 127.5,
                 noise_seed: int | None = None) -> None:
        top = (1 << adc_bits) - 1
        edges = [(k + 0.5 - offset) / sigma for k in range(top)]
        cdf = np.array([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in edges])
        u = (np.arange(65536) + 0.5) / 65536
        self.table = np.searchsorted(cdf, u).astype(np.uint8)
        self.adc_bits = adc_bits
        # a fixed seed makes one device's noise repeat run after run (the game day's golden document)
        self._seeded = None if noise_seed is None else np.random.Generator(np.random.PCG64(noise_seed))

    def samples(self, n: int, fault: str) -> bytes:
        if fault == "stuck_at":
            return bytes([0x5A & ((1 << self.adc_bits) - 1)]) * n
        # noise: PCG64 keyed from the OS generator for each block (an emulator needs speed, not secrecy)
        rng = self._seeded or np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(16), "little")))
        out = self.table[rng.integers(0, 65536, n, dtype=np.uint16)]
        if fault == "low_entropy":
            out = out & np.uint8(0xF0)
        return out.tobytes()


@dataclass
class _Descriptor:
    """A USB descriptor as pyusb reads it from a backend: plain attributes."""

    fields: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the USB EMULATOR's state ({exc.strerror})") from None


def _read_identity(path: Path) -> dict[str, Any]:
    """device.json, checked field by field (a damaged or hostile file is named, never an internal error)."""
    try:
        meta = json.loads(_read(path).decode("utf-8"), parse_constant=lambda c: float("nan"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a JSON document in UTF-8 ({exc})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: must be a JSON object, not {type(meta).__name__}")

    def get(name: str, ok: Callable[[Any], bool], want: str, default: Any = None) -> Any:
        value = meta.get(name, default)
        if not ok(value):
            raise UsageError(f"{path}: {name} must be {want} (got {str(value)[:40]!r})")
        return value

    def text(v: Any) -> bool:
        return isinstance(v, str) and 0 < len(v.encode()) <= 64 and v.isprintable()

    def whole(lo: int, hi: int) -> Callable[[Any], bool]:
        return lambda v: type(v) is int and lo <= v <= hi

    return {
        "serial": get("serial", text, "printable text of 1 to 64 bytes"),
        "model": get("model", text, "printable text of 1 to 64 bytes"),
        "vendor": get("vendor", text, "printable text of 1 to 64 bytes"),
        "address": get("address", whole(1, 127), "a USB address, 1 to 127", 7),
        "firmware_version": tuple(get("firmware_version", lambda v: isinstance(v, list) and len(v) == 3
                                      and all(whole(0, 255)(x) for x in v), "three whole numbers 0 to 255")),
        "claimed_min_entropy": float(get("claimed_min_entropy", lambda v: type(v) in (int, float) and 0 < v <= 8,
                                         "a number above 0 and at most 8", 4.0)),
        "noise_seed": get("noise_seed", lambda v: v is None or whole(0, 2**128 - 1)(v),
                          "a whole number from 0 to 2^128 - 1"),
    }


class EmulatedDevice:
    """One emulated QRNG: identity, TEST-ONLY key and chain, physics, the protocol's vendor requests, faults."""

    def __init__(self, folder: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        self.folder = Path(folder)
        meta = _read_identity(self.folder / "device.json")
        self.serial, self.model, self.vendor = meta["serial"], meta["model"], meta["vendor"]
        self.bus, self.address = 1, meta["address"]
        self.firmware = _read(self.folder / "firmware.bin")
        from cryptography import x509
        try:
            key = serialization.load_pem_private_key(_read(self.folder / "device.key"), None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{self.folder / 'device.key'}: not a PEM private key ({exc})") from None
        self._key = key
        try:
            chain = x509.load_pem_x509_certificates(_read(self.folder / "chain.pem"))
        except ValueError as exc:
            raise UsageError(f"{self.folder / 'chain.pem'}: not PEM certificates ({exc})") from None
        self.chain_blob = P.encode_chain([c.public_bytes(serialization.Encoding.DER) for c in chain])
        self.info = P.DeviceInfo(8, 8, P.FLAG_EMULATOR | P.FLAG_ATTESTATION | P.FLAG_SIGNED_READ,
                                 meta["claimed_min_entropy"], hashlib.sha256(self.firmware).digest(),
                                 meta["firmware_version"], self.vendor, self.model, self.serial)
        self.physics = _Physics(noise_seed=meta["noise_seed"])
        self._nonce: bytes | None = None
        self._lock = threading.Lock()
        self._control_mtime = -1.0
        self._control_checked = 0.0
        self.control = read_control(self.folder)
        self.started = time.monotonic()
        self.samples_out = 0
        self.halted = False      # bulk endpoint halted after a stall, until CLEAR_FEATURE(ENDPOINT_HALT)
        self.open_handles = 0
        self.driver_detached = False  # a bound kernel driver was detached by the host (and must be re-attached)

    # --- control file ----------------------------------------------------------------------------------------
    def refresh(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._control_checked < 0.02:
            return self.control
        self._control_checked = now
        try:
            m = (self.folder / "control").stat().st_mtime
        except FileNotFoundError:
            m = 0.0
        if m != self._control_mtime:
            self._control_mtime = m
            self.control = read_control(self.folder)
        return self.control

    @property
    def plugged(self) -> bool:
        return self.refresh()["plugged"] == "yes"

    # --- descriptors -------------------------------------------------------------------------------------------
    def device_descriptor(self) -> _Descriptor:
        return _Descriptor({"bLength": 18, "bDescriptorType": 1, "bcdUSB": 0x0200, "bDeviceClass": 0,
                            "bDeviceSubClass": 0, "bDeviceProtocol": 0, "bMaxPacketSize0": 64,
                            "idVendor": EMULATOR_VID, "idProduct": EMULATOR_PID, "bcdDevice": 0x0100,
                            "iManufacturer": 1, "iProduct": 2, "iSerialNumber": 3, "bNumConfigurations": 1,
                            "address": self.address, "bus": self.bus, "port_number": 1, "port_numbers": (1,),
                            "speed": 3})

    def strings(self) -> dict[int, str]:
        return {1: self.vendor, 2: self.model, 3: self.serial, 4: "QRNG protocol v1 (EMULATOR)"}

    # --- signatures --------------------------------------------------------------------------------------------
    def _next_counter(self) -> int:
        """The next signature counter, never repeated: one folder may be opened by several processes at once (qrngd
        and `qrng usb attest`, say), so the read-increment-write holds ``counter.lock`` (flock, blocking) across
        processes, and the new value is fsync'd before it is used."""
        path = self.folder / "counter"
        fd = os.open(self.folder / "counter.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # dropped by close(), or by the kernel if this process dies
            text = _read(path).decode("ascii", "replace").strip() if path.exists() else "0"
            if not text.isdigit() or len(text) > 20:
                raise UsageError(f"{path}: the signature counter must be a whole number, not {text[:40]!r}")
            value = int(text) + 1
            atomic_write(path, str(value).encode(), overwrite=True)
            return value
        finally:
            os.close(fd)

    def _sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        sig: bytes = self._key.sign(message, ec.ECDSA(hashes.SHA256()))
        return sig

    def status(self) -> P.Status:
        pf = self.control["physics_fault"]
        flags = P.Status.STARTUP_DONE | (0 if pf == "stuck_at" else P.Status.HEALTHY)
        if pf == "stuck_at":
            flags |= P.Status.RCT_LATCHED
        return P.Status(flags, 1 if pf == "stuck_at" else 0, 0, self.samples_out, 31_500,
                        int(time.monotonic() - self.started))

    # --- vendor requests (the protocol) -------------------------------------------------------------------------
    def vendor_in(self, request: int, value: int, length: int) -> bytes:
        """The answer to a vendor IN request; raises OSError(EPIPE) for a stall, as the device would."""
        if self.refresh()["control_fault"] == "stall":
            raise OSError(errno.EPIPE, "control request stalled (injected)")
        with self._lock:
            if request == P.REQ.GET_VERSION:
                if value < 1:
                    raise OSError(errno.EPIPE, "no common protocol version")
                out = (min(value, P.VERSION)).to_bytes(2, "little") + P.VERSION.to_bytes(2, "little")
            elif request == P.REQ.GET_INFO:
                out = self.info.encode()
            elif request == P.REQ.GET_CERTS:
                out = self.chain_blob[value * P.CHAIN_BLOCK:(value + 1) * P.CHAIN_BLOCK]
            elif request == P.REQ.GET_STATUS:
                out = self.status().encode()
            elif request == P.REQ.GET_ATTESTATION:
                nonce = self._take_nonce()
                att = P.Attestation(self._next_counter(), hashlib.sha256(self.info.encode()).digest(),
                                    hashlib.sha256(self.chain_blob).digest(), self.status(), b"")
                sig = self._sign(P.attestation_message(nonce, att))
                out = P.Attestation(att.counter, att.info_sha256, att.chain_sha256, att.status, sig).encode()
            elif request == P.REQ.SIGNED_READ:
                if not 1 <= value <= P.MAX_SIGNED_READ:
                    raise OSError(errno.EPIPE, "SIGNED_READ: 1..2048 samples")
                nonce = self._take_nonce()
                rd = P.SignedRead(self._next_counter(), self.physics.samples(value, self.control["physics_fault"]),
                                  b"")
                self.samples_out += value
                out = P.SignedRead(rd.counter, rd.samples, self._sign(P.read_message(nonce, rd))).encode()
            else:
                raise OSError(errno.EPIPE, f"unknown vendor request {request:#04x}")
            if len(out) > length:
                raise OSError(errno.EPIPE, f"wLength {length} is shorter than the {len(out)}-byte answer")
            return out

    def _take_nonce(self) -> bytes:
        if self._nonce is None:
            raise OSError(errno.EPIPE, "no nonce: SET_NONCE must come first")
        nonce, self._nonce = self._nonce, None
        return nonce

    def vendor_out(self, request: int, value: int, data: bytes) -> None:
        if self.refresh()["control_fault"] == "stall":
            raise OSError(errno.EPIPE, "control request stalled (injected)")
        with self._lock:
            if request == P.REQ.SET_NONCE and len(data) == P.NONCE_LEN:
                self._nonce = bytes(data)
            elif request == P.REQ.RESET and not data:
                self._nonce = None
                self.samples_out = 0
                self.started = time.monotonic()
            else:
                raise OSError(errno.EPIPE, f"vendor OUT request {request:#04x} with {len(data)} bytes refused")

    # --- bulk IN: the raw sample stream ---------------------------------------------------------------------------
    def bulk_in(self, size: int, timeout_ms: int) -> bytes:
        c = self.refresh()
        if c["plugged"] != "yes":
            raise OSError(errno.ENODEV, "no such device (unplugged)")
        if self.halted:
            raise OSError(errno.EPIPE, "endpoint halted")
        fault = c["fault"]
        if fault == "stall":
            self.halted = True
            raise OSError(errno.EPIPE, "endpoint stalled (injected)")
        if fault in ("timeout", "silent"):
            time.sleep(max(timeout_ms, 1) / 1000)
            raise TimeoutError(errno.ETIMEDOUT, "bulk read timed out (injected)")
        if fault == "eio":
            raise OSError(errno.EIO, "input/output error (injected)")
        if fault == "zlp":
            return b""
        n = size - size % PACKET if size >= PACKET else size
        if fault == "short":
            n = min(n, PACKET * 3 + 100)  # ends in a short packet
        data = self.physics.samples(n, c["physics_fault"])
        self.samples_out += n
        return data


class EmulatorBackend(usb.backend.IBackend):  # type: ignore[misc]
    """A pyusb backend (usb.backend.IBackend's methods) whose bus holds the emulated devices of the given state
    folders. Errors are raised as pyusb's USBError / USBTimeoutError with the errno libusb would give."""

    def __init__(self, folders: list[Path]) -> None:
        self.devices = [EmulatedDevice(Path(f)) for f in folders]

    # enumeration and descriptors
    def enumerate_devices(self) -> Any:
        return [d for d in self.devices if d.plugged]

    def get_device_descriptor(self, dev: EmulatedDevice) -> _Descriptor:
        return dev.device_descriptor()

    def get_configuration_descriptor(self, dev: EmulatedDevice, config: int) -> _Descriptor:
        return _Descriptor({"bLength": 9, "bDescriptorType": 2, "wTotalLength": 32, "bNumInterfaces": 1,
                            "bConfigurationValue": 1, "iConfiguration": 0, "bmAttributes": 0x80, "bMaxPower": 50,
                            "extra_descriptors": []})

    def get_interface_descriptor(self, dev: EmulatedDevice, intf: int, alt: int, config: int) -> _Descriptor:
        if intf != 0 or alt != 0:
            raise IndexError("no such interface")
        return _Descriptor({"bLength": 9, "bDescriptorType": 4, "bInterfaceNumber": 0, "bAlternateSetting": 0,
                            "bNumEndpoints": 1, "bInterfaceClass": P.INTERFACE_CLASS,
                            "bInterfaceSubClass": P.INTERFACE_SUBCLASS, "bInterfaceProtocol": P.INTERFACE_PROTOCOL,
                            "iInterface": 4, "extra_descriptors": []})

    def get_endpoint_descriptor(self, dev: EmulatedDevice, ep: int, intf: int, alt: int, config: int) -> _Descriptor:
        if ep != 0:
            raise IndexError("no such endpoint")
        return _Descriptor({"bLength": 7, "bDescriptorType": 5, "bEndpointAddress": ENDPOINT, "bmAttributes": 2,
                            "wMaxPacketSize": PACKET, "bInterval": 0, "bRefresh": 0, "bSynchAddress": 0,
                            "extra_descriptors": []})

    # handles
    def open_device(self, dev: EmulatedDevice) -> EmulatedDevice:
        self._alive(dev)
        if dev.refresh()["permission"] == "denied":
            self._raise(OSError(errno.EACCES, "Access denied (insufficient permissions)"))
        dev.open_handles += 1
        return dev

    def close_device(self, handle: EmulatedDevice) -> None:
        handle.open_handles = max(0, handle.open_handles - 1)

    def set_configuration(self, handle: EmulatedDevice, value: int) -> None:
        self._alive(handle)

    def get_configuration(self, handle: EmulatedDevice) -> int:
        self._alive(handle)
        return 1

    def set_interface_altsetting(self, handle: EmulatedDevice, intf: int, alt: int) -> None:
        self._alive(handle)

    def claim_interface(self, handle: EmulatedDevice, intf: int) -> None:
        self._alive(handle)

    def release_interface(self, handle: EmulatedDevice, intf: int) -> None:
        pass

    def is_kernel_driver_active(self, handle: EmulatedDevice, intf: int) -> bool:
        return handle.refresh()["kernel_driver"] == "bound" and not handle.driver_detached

    def detach_kernel_driver(self, handle: EmulatedDevice, intf: int) -> None:
        handle.driver_detached = True

    def attach_kernel_driver(self, handle: EmulatedDevice, intf: int) -> None:
        handle.driver_detached = False

    def clear_halt(self, handle: EmulatedDevice, ep: int) -> None:
        self._alive(handle)
        handle.halted = False

    def reset_device(self, handle: EmulatedDevice) -> None:
        self._alive(handle)
        handle.halted = False

    def get_parent(self, dev: EmulatedDevice) -> None:
        return None

    # transfers
    def bulk_read(self, handle: EmulatedDevice, ep: int, intf: int, buff: Any, timeout: int) -> int:
        data = self._call(lambda: handle.bulk_in(len(buff), timeout))
        memoryview(buff).cast("B")[:len(data)] = data
        return len(data)

    # pyusb's backend interface names its parameters after the USB specification's setup packet fields
    def ctrl_transfer(self, handle: EmulatedDevice, bmRequestType: int, bRequest: int, wValue: int,  # noqa: N803
                      wIndex: int, data: Any, timeout: int) -> int:  # noqa: N803
        self._alive(handle)
        rtype = bmRequestType & 0x60
        if rtype == 0x00:  # standard requests: GET_DESCRIPTOR (strings), CLEAR_FEATURE(ENDPOINT_HALT)
            return self._standard(handle, bmRequestType, bRequest, wValue, wIndex, data)
        if bmRequestType == P.RT_IN:
            out = self._call(lambda: handle.vendor_in(bRequest, wValue, len(data)))
            memoryview(data).cast("B")[:len(out)] = out
            return len(out)
        if bmRequestType == P.RT_OUT:
            self._call(lambda: handle.vendor_out(bRequest, wValue, bytes(data)))
            return len(data)
        self._raise(OSError(errno.EPIPE, "request type not supported"))
        return 0

    def _standard(self, dev: EmulatedDevice, rt: int, req: int, value: int, index: int, data: Any) -> int:
        if req == 6 and value >> 8 == 3:  # GET_DESCRIPTOR(STRING)
            i = value & 0xFF
            raw = b"\x09\x04" if i == 0 else dev.strings().get(i, "").encode("utf-16-le")
            if i and i not in dev.strings():
                self._raise(OSError(errno.EPIPE, "no such string"))
            desc = bytes([len(raw) + 2, 3]) + raw
            n = min(len(desc), len(data))
            memoryview(data).cast("B")[:n] = desc[:n]
            return n
        if req == 1 and rt == 0x02 and value == 0:  # CLEAR_FEATURE(ENDPOINT_HALT)
            dev.halted = False
            return 0
        self._raise(OSError(errno.EPIPE, f"standard request {req} not supported"))
        return 0

    def _alive(self, dev: EmulatedDevice) -> None:
        if not dev.plugged:
            self._raise(OSError(errno.ENODEV, "no such device (unplugged)"))

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except (OSError, TimeoutError) as exc:
            self._raise(exc)

    @staticmethod
    def _raise(exc: BaseException) -> None:
        import usb.core
        code = getattr(exc, "errno", None) or errno.EIO
        text = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, TimeoutError) or code == errno.ETIMEDOUT:
            raise usb.core.USBTimeoutError(text, -7, errno.ETIMEDOUT)
        raise usb.core.USBError(text, {errno.EPIPE: -9, errno.ENODEV: -4, errno.EACCES: -3}.get(code, -1), code)
