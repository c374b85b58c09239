"""The C boundary: each exported PKCS#11 function's Python half.

Every function validates pointers first, calls the pure :class:`~qrng_pkcs11.token.Token`, and
writes its CK_RV through :func:`_call`, the one place where exceptions become codes (ERROR_TABLE).
The C wrapper pre-sets CKR_GENERAL_ERROR, so nothing here can return CKR_OK by accident.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import ckdefs as ck
from .objects import padded
from .token import CKRError, Token

__all__ = ["ERROR_TABLE", "install", "rv_for"]


def _error_table() -> list[tuple[type[BaseException], int]]:
    from qrng.errors import EntropyError, SetupError, SourceRemoved
    from qrng.sources.usbproto import ProtocolError as UsbProtocolError
    return [
        (SourceRemoved, ck.CKR_DEVICE_REMOVED),
        (UsbProtocolError, ck.CKR_DEVICE_ERROR),  # the device does not speak the USB protocol as it should
        (SetupError, ck.CKR_GENERAL_ERROR),  # a configuration or installation problem, never a device fault
        (EntropyError, ck.CKR_DEVICE_ERROR),  # health-test failure, failed pipeline, source error
        (MemoryError, ck.CKR_HOST_MEMORY),
    ]


ERROR_TABLE: list[tuple[type[BaseException], int]] = []


def rv_for(exc: BaseException) -> int:
    """Map an exception to its CK_RV: CKRError carries its own; the table covers the rest."""
    if isinstance(exc, CKRError):
        return exc.rv
    if not ERROR_TABLE:
        ERROR_TABLE.extend(_error_table())
    for cls, rv in ERROR_TABLE:
        if isinstance(exc, cls):
            return rv
    return ck.CKR_GENERAL_ERROR


class _CallLog:
    """Optional call log (QRNG_PKCS11_LOG=/path/to/file): one line per call with its result."""

    def __init__(self) -> None:
        path = os.environ.get("QRNG_PKCS11_LOG")
        self._f = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def write(self, name: str, rv: int, detail: str = "") -> None:
        if self._f is not None:
            self._f.write(f"{time.strftime('%H:%M:%S')} pid={os.getpid()} {name} -> "
                          f"{ck.CKR_NAMES.get(rv, hex(rv))}{' ' + detail if detail else ''}\n")


class _Boundary:
    """What every exported function's Python half shares: the cffi objects, the token made at C_Initialize, the
    call log, and :meth:`call`, the one place where exceptions become CK_RV codes."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        self.ffi, self.lib = ffi, lib
        self.log = _CallLog()
        self.state: dict[str, Token] = {}
        self._said: set[str] = set()

    def call(self, name: str, rv_ptr: Any, fn: Callable[[], int | None]) -> None:
        try:
            rv = fn()
            code = ck.CKR_OK if rv is None else rv
            self.log.write(name, code)
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become CK_RV codes
            code = rv_for(exc)
            self.log.write(name, code, str(exc))
            if code == ck.CKR_GENERAL_ERROR and str(exc) not in self._said:
                # the caller sees only a code: say why, once, where a person can read it
                self._said.add(str(exc))
                print(f"qrng-pkcs11: {name}: {exc}", file=sys.stderr)
                if not isinstance(exc, CKRError):
                    traceback.print_exc(file=sys.stderr)
        rv_ptr[0] = code

    def token(self) -> Token:
        t = self.state.get("token")
        if t is None:
            raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED)
        return t

    def extern(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn`` (named py_C_x) as the Python half of C_x, its result written through :meth:`call`."""
        name = fn.__name__
        cname = name[3:]

        def wrapper(rv_ptr: Any, *args: Any) -> None:
            self.call(cname, rv_ptr, lambda: fn(*args))

        wrapper.__name__ = name
        return self.ffi.def_extern(name=name, onerror=_on_error)(wrapper)  # type: ignore[no-any-return]

    def nonnull(self, *ptrs: Any) -> None:
        for p in ptrs:
            if p == self.ffi.NULL:
                raise CKRError(ck.CKR_ARGUMENTS_BAD, "NULL pointer")

    def fill_list(self, values: list[int], p_list: Any, p_count: Any) -> int | None:
        self.nonnull(p_count)
        if p_list == self.ffi.NULL:
            p_count[0] = len(values)
            return None
        if p_count[0] < len(values):
            p_count[0] = len(values)
            return ck.CKR_BUFFER_TOO_SMALL
        for i, v in enumerate(values):
            p_list[i] = v
        p_count[0] = len(values)
        return None

    def template(self, p_tmpl: Any, count: int) -> list[tuple[int, bytes]]:
        if count and p_tmpl == self.ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        out = []
        for i in range(count):
            a = p_tmpl[i]
            if a.pValue == self.ffi.NULL and a.ulValueLen:
                raise CKRError(ck.CKR_ARGUMENTS_BAD)
            out.append((a.type, bytes(self.ffi.buffer(a.pValue, a.ulValueLen)) if a.ulValueLen else b""))
        return out


def _on_error(exc_type: Any, exc: Any, tb: Any) -> None:
    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)


def install(ffi: Any, lib: Any) -> None:
    """Register the Python half of every exported function, chapter by chapter of PKCS#11 v2.40."""
    import qrng._openssl
    qrng._openssl.ISOLATE = bool(lib.qrng_started_python())  # noqa: SLF001 - the package's own private module
    b = _Boundary(ffi, lib)
    for register in (_general, _slots_and_tokens, _sessions, _objects, _random_numbers):
        register(b)

    def _child() -> None:
        t = b.state.get("token")
        if t is not None:
            t.after_fork_in_child()

    os.register_at_fork(after_in_child=_child)


def _general(b: _Boundary) -> None:
    """5.4: C_Initialize, C_Finalize, C_GetInfo."""
    @b.extern
    def py_C_Initialize(p_args: Any) -> None:
        from .service import make_token
        t = b.state.get("token") or make_token(on_session_change=lambda h, o: b.lib.qrng_session_mark(h, int(o)),
                                            on_stale_output=b.lib.qrng_buffer_clear)
        t.initialize()
        b.state["token"] = t
        # the fast-path buffer is bypassed when every request must have prediction resistance
        b.lib.qrng_fast_configure(int(not (t.config is not None and t.config.drbg.prediction_resistance)))

    @b.extern
    def py_C_Finalize(p_reserved: Any) -> None:
        b.token().finalize()

    @b.extern
    def py_C_GetInfo(p_info: Any) -> None:
        b.nonnull(p_info)
        b.token()
        info = p_info[0]
        info.cryptokiVersion.major, info.cryptokiVersion.minor = 2, 40
        b.ffi.memmove(info.manufacturerID, padded("qrng-ceremony", 32), 32)
        info.flags = 0
        b.ffi.memmove(info.libraryDescription, padded("qrng-ceremony QRNG PKCS#11", 32), 32)
        info.libraryVersion.major, info.libraryVersion.minor = 0, 1


def _slots_and_tokens(b: _Boundary) -> None:
    """5.5: slots, tokens, mechanisms, PINs, slot events."""
    @b.extern
    def py_C_GetSlotList(token_present: int, p_list: Any, p_count: Any) -> int | None:
        return b.fill_list(b.token().slot_list(bool(token_present)), p_list, p_count)

    @b.extern
    def py_C_GetSlotInfo(slot: int, p_info: Any) -> None:
        b.nonnull(p_info)
        desc, manuf, flags = b.token().slot_info(slot)
        info = p_info[0]
        b.ffi.memmove(info.slotDescription, padded(desc, 64), 64)
        b.ffi.memmove(info.manufacturerID, padded(manuf, 32), 32)
        info.flags = flags
        info.hardwareVersion.major, info.hardwareVersion.minor = 1, 0
        info.firmwareVersion.major, info.firmwareVersion.minor = 0, 1

    @b.extern
    def py_C_GetTokenInfo(slot: int, p_info: Any) -> None:
        b.nonnull(p_info)
        ti = b.token().token_info(slot)
        info = p_info[0]
        for field, text, size in (("label", ti.label, 32), ("manufacturerID", ti.manufacturer, 32),
                                  ("model", ti.model, 16), ("serialNumber", ti.serial, 16)):
            b.ffi.memmove(getattr(info, field), padded(text, size), size)
        info.flags = ti.flags
        info.ulMaxSessionCount = ck.CK_EFFECTIVELY_INFINITE
        info.ulSessionCount = ti.session_count
        info.ulMaxRwSessionCount = ck.CK_EFFECTIVELY_INFINITE
        info.ulRwSessionCount = ti.rw_session_count
        info.ulMaxPinLen, info.ulMinPinLen = 64, 0
        for f in ("ulTotalPublicMemory", "ulFreePublicMemory", "ulTotalPrivateMemory", "ulFreePrivateMemory"):
            setattr(info, f, ck.CK_UNAVAILABLE_INFORMATION)
        info.hardwareVersion.major, info.hardwareVersion.minor = ti.hardware_version
        info.firmwareVersion.major, info.firmwareVersion.minor = ti.firmware_version
        b.ffi.memmove(info.utcTime, b" " * 16, 16)

    @b.extern
    def py_C_GetMechanismList(slot: int, p_list: Any, p_count: Any) -> int | None:
        return b.fill_list(b.token().mechanisms(slot), p_list, p_count)

    @b.extern
    def py_C_GetMechanismInfo(slot: int, mech: int, p_info: Any) -> None:
        b.nonnull(p_info)
        b.token().mechanism_info(slot, mech)

    @b.extern
    def py_C_InitToken(slot: int, p_pin: Any, pin_len: int, p_label: Any) -> None:
        b.token().init_token(slot)

    @b.extern
    def py_C_InitPIN(h: int, p_pin: Any, pin_len: int) -> None:
        b.token().change_pin(h)

    @b.extern
    def py_C_SetPIN(h: int, p_old: Any, old_len: int, p_new: Any, new_len: int) -> None:
        b.token().change_pin(h)

    @b.extern
    def py_C_WaitForSlotEvent(flags: int, p_slot: Any, p_reserved: Any) -> None:
        if p_reserved != b.ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        b.token().wait_for_slot_event(flags)


def _sessions(b: _Boundary) -> None:
    """5.6 sessions and 5.5 login."""
    @b.extern
    def py_C_OpenSession(slot: int, flags: int, p_app: Any, notify: Any, p_session: Any) -> None:
        b.nonnull(p_session)
        p_session[0] = b.token().open_session(slot, flags)

    @b.extern
    def py_C_CloseSession(h: int) -> None:
        b.token().close_session(h)

    @b.extern
    def py_C_CloseAllSessions(slot: int) -> None:
        b.token().close_all_sessions(slot)

    @b.extern
    def py_C_GetSessionInfo(h: int, p_info: Any) -> None:
        b.nonnull(p_info)
        slot, st, flags = b.token().session_info(h)
        p_info[0].slotID, p_info[0].state, p_info[0].flags, p_info[0].ulDeviceError = slot, st, flags, 0

    @b.extern
    def py_C_Login(h: int, user: int, p_pin: Any, pin_len: int) -> None:
        if p_pin == b.ffi.NULL and pin_len:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        pin = bytes(b.ffi.buffer(p_pin, pin_len)) if p_pin != b.ffi.NULL else None
        b.token().login(h, user, pin)

    @b.extern
    def py_C_Logout(h: int) -> None:
        b.token().logout(h)


def _objects(b: _Boundary) -> None:
    """5.7: finding objects and reading their attributes; nothing is created or changed."""
    @b.extern
    def py_C_FindObjectsInit(h: int, p_tmpl: Any, count: int) -> None:
        b.token().find_init(h, b.template(p_tmpl, count))

    @b.extern
    def py_C_FindObjects(h: int, p_obj: Any, max_count: int, p_count: Any) -> None:
        b.nonnull(p_obj, p_count)
        found = b.token().find(h, max_count)
        for i, o in enumerate(found):
            p_obj[i] = o
        p_count[0] = len(found)

    @b.extern
    def py_C_FindObjectsFinal(h: int) -> None:
        b.token().find_final(h)

    @b.extern
    def py_C_GetAttributeValue(h: int, obj: int, p_tmpl: Any, count: int) -> int | None:
        if count and p_tmpl == b.ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        values = b.token().attribute_values(h, obj, [p_tmpl[i].type for i in range(count)])
        result: int | None = None
        for i, v in enumerate(values):  # v2.40 5.7: every attribute is processed; one code is returned
            a = p_tmpl[i]
            if isinstance(v, int):
                a.ulValueLen = ck.CK_UNAVAILABLE_INFORMATION
                result = v
            elif a.pValue == b.ffi.NULL:
                a.ulValueLen = len(v)
            elif a.ulValueLen >= len(v):
                b.ffi.memmove(a.pValue, v, len(v))
                a.ulValueLen = len(v)
            else:
                a.ulValueLen = ck.CK_UNAVAILABLE_INFORMATION
                result = ck.CKR_BUFFER_TOO_SMALL
        return result

    @b.extern
    def py_C_GetObjectSize(h: int, obj: int, p_size: Any) -> None:
        b.nonnull(p_size)
        p_size[0] = b.token().object_size(h, obj)

    @b.extern
    def py_C_CreateObject(h: int, p_tmpl: Any, count: int, p_obj: Any) -> None:
        b.token().modify_object(h, None)

    @b.extern
    def py_C_CopyObject(h: int, obj: int, p_tmpl: Any, count: int, p_new: Any) -> None:
        b.token().modify_object(h, obj)

    @b.extern
    def py_C_DestroyObject(h: int, obj: int) -> None:
        b.token().modify_object(h, obj)

    @b.extern
    def py_C_SetAttributeValue(h: int, obj: int, p_tmpl: Any, count: int) -> None:
        b.token().modify_object(h, obj)


def _random_numbers(b: _Boundary) -> None:
    """5.15, and the C fast path's refill."""
    @b.extern
    def py_C_SeedRandom(h: int, p_seed: Any, seed_len: int) -> None:
        if p_seed == b.ffi.NULL and seed_len:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        b.token().seed_random(h, bytes(b.ffi.buffer(p_seed, seed_len)) if seed_len else b"")
        b.lib.qrng_buffer_clear()  # bytes buffered before the seed must not be served after it

    @b.extern
    def py_C_GenerateRandom(h: int, p_data: Any, n: int) -> None:
        if n:
            b.nonnull(p_data)
        t = b.token()
        t.check_session(h)  # refused before generation: the caller's buffer is not touched
        if not n:
            return
        buf = b.ffi.buffer(p_data, n)
        try:
            t.generate_random_into(h, buf)
        except BaseException:
            # failed after generation began (a health test in the middle of a large request): the caller's
            # buffer must never hold partial output, so it is wiped to zero (README, "C_GenerateRandom on error")
            zero = bytes(min(n, 1 << 20))
            for off in range(0, n, len(zero)):
                k = min(len(zero), n - off)
                buf[off:off + k] = zero[:k]
            raise

    @b.ffi.def_extern(name="py_refill", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_refill(rv_ptr: Any, buf: Any, n: int) -> None:
        def fill() -> None:
            b.token().refill(b.ffi.buffer(buf, n))
        b.call("refill", rv_ptr, fill)
