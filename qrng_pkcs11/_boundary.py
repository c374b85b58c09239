"""The C boundary of the in-process module: one Python entry per backend operation of the C token core
(csrc/token/token.h, called from csrc/pkcs11/module.c), each over :class:`~qrng_pkcs11.backend.Backend`.

Each entry that answers with a CK_RV writes it through :meth:`_Boundary.call`, the one place where exceptions
become codes (ERROR_TABLE). The C side pre-sets CKR_GENERAL_ERROR, so nothing here can return CKR_OK by
accident. Every entry is called under the token core's lock.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from . import ckdefs as ck
from .backend import Backend, CKRError

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


class _Boundary:
    """What every entry shares: the cffi objects, the backend made at C_Initialize, and :meth:`call`, the one
    place where exceptions become CK_RV codes."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        self.ffi, self.lib = ffi, lib
        self.backend: Backend | None = None
        self._said: set[str] = set()

    def say(self, name: str, exc: BaseException) -> None:
        """The caller sees only a code: say why, once, where a person can read it."""
        if str(exc) in self._said:
            return
        self._said.add(str(exc))
        print(f"qrng-pkcs11: {name}: {exc}", file=sys.stderr)
        if not isinstance(exc, CKRError):
            import traceback
            traceback.print_exc(file=sys.stderr)

    def call(self, name: str, rv_ptr: Any, fn: Callable[[], None]) -> None:
        try:
            fn()
            code = ck.CKR_OK
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become CK_RV codes
            code = rv_for(exc)
            if code == ck.CKR_GENERAL_ERROR:
                self.say(name, exc)
        rv_ptr[0] = code

    def made(self) -> Backend:
        if self.backend is None:
            raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED)
        return self.backend

    def text(self, dst: Any, size: int, text: str) -> None:
        """A NUL-terminated copy of ``text`` in a C char array of ``size`` bytes (cut on a UTF-8 boundary)."""
        raw = text.encode("utf-8")[:size - 1].decode("utf-8", "ignore").encode("utf-8")
        self.ffi.memmove(dst, raw + b"\0", len(raw) + 1)


def _on_error(exc_type: Any, exc: Any, tb: Any) -> None:
    import traceback
    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)


def install(ffi: Any, lib: Any) -> None:
    """Register the Python entries of the backend operations."""
    import qrng._openssl
    started = bool(lib.qrng_started_python())
    qrng._openssl.ISOLATE = started  # noqa: SLF001 - the package's own private module
    b = _Boundary(ffi, lib)
    extern = ffi.def_extern

    @extern(name="py_backend_init", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_init(rv_ptr: Any, p_fast: Any) -> None:
        def init() -> None:
            from .service import make_backend
            # in a C host every entry runs under the token lock, which fork() takes too, so what serving needs can
            # be imported when the source is first opened; a Python host forks holding only the GIL: import now
            backend = make_backend(on_stale_output=lib.qrng_buffer_clear, import_now=not started)
            backend.initialize()
            b.backend = backend
            # the fast-path buffer is bypassed when every request must have prediction resistance
            p_fast[0] = int(not (backend.config is not None and backend.config.drbg.prediction_resistance))
        b.call("C_Initialize", rv_ptr, init)

    @extern(name="py_backend_finalize", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_finalize() -> None:
        backend, b.backend = b.backend, None
        if backend is not None:
            try:
                backend.finalize()
            except Exception as exc:  # noqa: BLE001 - C_Finalize still succeeds: the source is dropped either way
                b.say("C_Finalize", exc)

    @extern(name="py_backend_certificate", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_certificate(index: int, out: Any, cap: int, p_len: Any) -> None:
        certs = b.backend.certificates() if b.backend is not None else []
        der = certs[index] if index < len(certs) else b""
        p_len[0] = len(der)
        if der and len(der) <= cap:
            ffi.memmove(out, der, len(der))

    @extern(name="py_backend_info", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_info(rv_ptr: Any, open_source: int, slot: Any, slot_size: int, label: Any, label_size: int,
                        model: Any, model_size: int, serial: Any, serial_size: int, p_flags: Any) -> None:
        def info() -> None:
            d = b.made().describe(bool(open_source))
            for dst, size, text in ((slot, slot_size, d.slot_description), (label, label_size, d.label),
                                    (model, model_size, d.model), (serial, serial_size, d.serial)):
                b.text(dst, size, text)
            p_flags[0] = int(d.error_state) | int(d.absent) << 1 | int(d.hardware) << 2
        b.call("C_GetTokenInfo" if open_source else "C_GetSlotInfo", rv_ptr, info)

    @extern(name="py_backend_generate", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_generate(rv_ptr: Any, out: Any, n: int, p_touched: Any) -> None:
        def generate() -> None:
            def started() -> None:
                p_touched[0] = 1  # the pipeline writes into the caller's buffer: on a failure the core zeroes it
            b.made().generate_into(ffi.buffer(out, n), started)
        b.call("C_GenerateRandom", rv_ptr, generate)

    @extern(name="py_backend_seed", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_seed(rv_ptr: Any, data: Any, n: int) -> None:
        b.call("C_SeedRandom", rv_ptr, lambda: b.made().seed(bytes(ffi.buffer(data, n)) if n else b""))

    @extern(name="py_backend_health", onerror=_on_error)  # type: ignore[untyped-decorator]
    def py_backend_health(out: Any, cap: int, p_len: Any) -> None:
        try:
            report = b.made().health_json()
        except Exception as exc:  # noqa: BLE001 - the report says why it could not be made
            import json
            report = json.dumps({"state": "unavailable", "error": str(exc)}).encode()
        p_len[0] = len(report)
        if len(report) <= cap:
            ffi.memmove(out, report, len(report))

    def _child() -> None:
        if b.backend is not None:
            b.backend.after_fork_in_child()

    os.register_at_fork(after_in_child=_child)
