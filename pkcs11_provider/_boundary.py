"""The C boundary: each exported PKCS#11 function's Python half.

Every function validates pointers first, calls the pure :class:`~pkcs11_provider.token.Token`, and
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
from .token import CKRError, Token, padded

__all__ = ["ERROR_TABLE", "install", "rv_for"]


def _error_table() -> list[tuple[type[BaseException], int]]:
    from qrng.errors import EntropyError, SetupError, SourceRemoved
    return [
        (SourceRemoved, ck.CKR_DEVICE_REMOVED),
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


def install(ffi: Any, lib: Any) -> None:  # noqa: C901 - one def_extern per exported function
    import qrng._openssl
    qrng._openssl.ISOLATE = bool(lib.qrng_started_python())  # noqa: SLF001 - the package's own private module
    log = _CallLog()
    state: dict[str, Token] = {}
    said: set[str] = set()

    def call(name: str, rv_ptr: Any, fn: Callable[[], int | None]) -> None:
        try:
            rv = fn()
            code = ck.CKR_OK if rv is None else rv
            log.write(name, code)
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become CK_RV codes
            code = rv_for(exc)
            log.write(name, code, str(exc))
            if code == ck.CKR_GENERAL_ERROR and str(exc) not in said:
                # the caller sees only a code: say why, once, where a person can read it
                said.add(str(exc))
                print(f"qrng-pkcs11: {name}: {exc}", file=sys.stderr)
                if not isinstance(exc, CKRError):
                    traceback.print_exc(file=sys.stderr)
        rv_ptr[0] = code

    def token() -> Token:
        t = state.get("token")
        if t is None:
            raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED)
        return t

    def extern(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__
        cname = name[3:]

        def wrapper(rv_ptr: Any, *args: Any) -> None:
            call(cname, rv_ptr, lambda: fn(*args))

        wrapper.__name__ = name
        return ffi.def_extern(name=name, onerror=_onerror)(wrapper)  # type: ignore[no-any-return]

    def _onerror(exc_type: Any, exc: Any, tb: Any) -> None:
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)

    def nonnull(*ptrs: Any) -> None:
        for p in ptrs:
            if p == ffi.NULL:
                raise CKRError(ck.CKR_ARGUMENTS_BAD, "NULL pointer")

    # --- general purpose --------------------------------------------------------------------------------
    @extern
    def py_C_Initialize(p_args: Any) -> None:
        from qrng.config import load_config

        from .service import make_token
        t = state.get("token") or make_token(on_session_change=lambda h, o: lib.qrng_session_mark(h, int(o)),
                                            on_stale_output=lib.qrng_buffer_clear)
        t.initialize()
        state["token"] = t
        # the fast-path buffer is bypassed when every request must have prediction resistance
        lib.qrng_fast_configure(int(not load_config().drbg.prediction_resistance))

    @extern
    def py_C_Finalize(p_reserved: Any) -> None:
        token().finalize()

    @extern
    def py_C_GetInfo(p_info: Any) -> None:
        nonnull(p_info)
        token()
        info = p_info[0]
        info.cryptokiVersion.major, info.cryptokiVersion.minor = 2, 40
        ffi.memmove(info.manufacturerID, padded("qrng-ceremony", 32), 32)
        info.flags = 0
        ffi.memmove(info.libraryDescription, padded("qrng-ceremony QRNG PKCS#11", 32), 32)
        info.libraryVersion.major, info.libraryVersion.minor = 0, 1

    # --- slots and tokens --------------------------------------------------------------------------------
    def fill_list(values: list[int], p_list: Any, p_count: Any) -> int | None:
        nonnull(p_count)
        if p_list == ffi.NULL:
            p_count[0] = len(values)
            return None
        if p_count[0] < len(values):
            p_count[0] = len(values)
            return ck.CKR_BUFFER_TOO_SMALL
        for i, v in enumerate(values):
            p_list[i] = v
        p_count[0] = len(values)
        return None

    @extern
    def py_C_GetSlotList(token_present: int, p_list: Any, p_count: Any) -> int | None:
        return fill_list(token().slot_list(bool(token_present)), p_list, p_count)

    @extern
    def py_C_GetSlotInfo(slot: int, p_info: Any) -> None:
        nonnull(p_info)
        desc, manuf, flags = token().slot_info(slot)
        info = p_info[0]
        ffi.memmove(info.slotDescription, padded(desc, 64), 64)
        ffi.memmove(info.manufacturerID, padded(manuf, 32), 32)
        info.flags = flags
        info.hardwareVersion.major, info.hardwareVersion.minor = 1, 0
        info.firmwareVersion.major, info.firmwareVersion.minor = 0, 1

    @extern
    def py_C_GetTokenInfo(slot: int, p_info: Any) -> None:
        nonnull(p_info)
        ti = token().token_info(slot)
        info = p_info[0]
        for field, text, size in (("label", ti.label, 32), ("manufacturerID", ti.manufacturer, 32),
                                  ("model", ti.model, 16), ("serialNumber", ti.serial, 16)):
            ffi.memmove(getattr(info, field), padded(text, size), size)
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
        ffi.memmove(info.utcTime, b" " * 16, 16)

    @extern
    def py_C_GetMechanismList(slot: int, p_list: Any, p_count: Any) -> int | None:
        return fill_list(token().mechanisms(slot), p_list, p_count)

    @extern
    def py_C_GetMechanismInfo(slot: int, mech: int, p_info: Any) -> None:
        nonnull(p_info)
        token().mechanism_info(slot, mech)

    @extern
    def py_C_InitToken(slot: int, p_pin: Any, pin_len: int, p_label: Any) -> None:
        token().init_token(slot)

    @extern
    def py_C_InitPIN(h: int, p_pin: Any, pin_len: int) -> None:
        token().change_pin(h)

    @extern
    def py_C_SetPIN(h: int, p_old: Any, old_len: int, p_new: Any, new_len: int) -> None:
        token().change_pin(h)

    @extern
    def py_C_WaitForSlotEvent(flags: int, p_slot: Any, p_reserved: Any) -> None:
        if p_reserved != ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        token().wait_for_slot_event(flags)

    # --- sessions ------------------------------------------------------------------------------------------
    @extern
    def py_C_OpenSession(slot: int, flags: int, p_app: Any, notify: Any, p_session: Any) -> None:
        nonnull(p_session)
        p_session[0] = token().open_session(slot, flags)

    @extern
    def py_C_CloseSession(h: int) -> None:
        token().close_session(h)

    @extern
    def py_C_CloseAllSessions(slot: int) -> None:
        token().close_all_sessions(slot)

    @extern
    def py_C_GetSessionInfo(h: int, p_info: Any) -> None:
        nonnull(p_info)
        slot, st, flags = token().session_info(h)
        p_info[0].slotID, p_info[0].state, p_info[0].flags, p_info[0].ulDeviceError = slot, st, flags, 0

    @extern
    def py_C_Login(h: int, user: int, p_pin: Any, pin_len: int) -> None:
        if p_pin == ffi.NULL and pin_len:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        pin = bytes(ffi.buffer(p_pin, pin_len)) if p_pin != ffi.NULL else None
        token().login(h, user, pin)

    @extern
    def py_C_Logout(h: int) -> None:
        token().logout(h)

    # --- objects ----------------------------------------------------------------------------------------------
    def template(p_tmpl: Any, count: int) -> list[tuple[int, bytes]]:
        if count and p_tmpl == ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        out = []
        for i in range(count):
            a = p_tmpl[i]
            if a.pValue == ffi.NULL and a.ulValueLen:
                raise CKRError(ck.CKR_ARGUMENTS_BAD)
            out.append((a.type, bytes(ffi.buffer(a.pValue, a.ulValueLen)) if a.ulValueLen else b""))
        return out

    @extern
    def py_C_FindObjectsInit(h: int, p_tmpl: Any, count: int) -> None:
        token().find_init(h, template(p_tmpl, count))

    @extern
    def py_C_FindObjects(h: int, p_obj: Any, max_count: int, p_count: Any) -> None:
        nonnull(p_obj, p_count)
        found = token().find(h, max_count)
        for i, o in enumerate(found):
            p_obj[i] = o
        p_count[0] = len(found)

    @extern
    def py_C_FindObjectsFinal(h: int) -> None:
        token().find_final(h)

    @extern
    def py_C_GetAttributeValue(h: int, obj: int, p_tmpl: Any, count: int) -> int | None:
        if count and p_tmpl == ffi.NULL:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        values = token().attribute_values(h, obj, [p_tmpl[i].type for i in range(count)])
        result: int | None = None
        for i, v in enumerate(values):  # v2.40 5.7: every attribute is processed; one code is returned
            a = p_tmpl[i]
            if isinstance(v, int):
                a.ulValueLen = ck.CK_UNAVAILABLE_INFORMATION
                result = v
            elif a.pValue == ffi.NULL:
                a.ulValueLen = len(v)
            elif a.ulValueLen >= len(v):
                ffi.memmove(a.pValue, v, len(v))
                a.ulValueLen = len(v)
            else:
                a.ulValueLen = ck.CK_UNAVAILABLE_INFORMATION
                result = ck.CKR_BUFFER_TOO_SMALL
        return result

    @extern
    def py_C_GetObjectSize(h: int, obj: int, p_size: Any) -> None:
        nonnull(p_size)
        p_size[0] = token().object_size(h, obj)

    @extern
    def py_C_CreateObject(h: int, p_tmpl: Any, count: int, p_obj: Any) -> None:
        token().modify_object(h, None)

    @extern
    def py_C_CopyObject(h: int, obj: int, p_tmpl: Any, count: int, p_new: Any) -> None:
        token().modify_object(h, obj)

    @extern
    def py_C_DestroyObject(h: int, obj: int) -> None:
        token().modify_object(h, obj)

    @extern
    def py_C_SetAttributeValue(h: int, obj: int, p_tmpl: Any, count: int) -> None:
        token().modify_object(h, obj)

    # --- random numbers (5.15) ------------------------------------------------------------------------------
    @extern
    def py_C_SeedRandom(h: int, p_seed: Any, seed_len: int) -> None:
        if p_seed == ffi.NULL and seed_len:
            raise CKRError(ck.CKR_ARGUMENTS_BAD)
        token().seed_random(h, bytes(ffi.buffer(p_seed, seed_len)) if seed_len else b"")
        lib.qrng_buffer_clear()  # bytes buffered before the seed must not be served after it

    @extern
    def py_C_GenerateRandom(h: int, p_data: Any, n: int) -> None:
        if n:
            nonnull(p_data)
        t = token()
        t.check_session(h)  # refused before generation: the caller's buffer is not touched
        if not n:
            return
        buf = ffi.buffer(p_data, n)
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

    @ffi.def_extern(name="py_refill", onerror=_onerror)  # type: ignore[untyped-decorator]
    def py_refill(rv_ptr: Any, buf: Any, n: int) -> None:
        def fill() -> None:
            token().refill(ffi.buffer(buf, n))
        call("refill", rv_ptr, fill)

    def _child() -> None:
        t = state.get("token")
        if t is not None:
            t.after_fork_in_child()

    os.register_at_fork(after_in_child=_child)
