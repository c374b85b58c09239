"""The token as a pure state machine: slot, sessions, login state, objects, random-number service.

No cffi here: the C boundary (``_boundary.py``) converts arguments, calls these methods and maps any
exception to a CK_RV in one table. Section numbers refer to the PKCS#11 Base Specification v2.40.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ckdefs as ck
from .objects import TokenObject, certificate_object, health_object

__all__ = ["CKRError", "Session", "Token", "TokenInfo"]

SLOT_ID = 0
MAX_PIN = 64


class CKRError(Exception):
    """A PKCS#11 error with its CK_RV; the message explains it in the call log."""

    def __init__(self, rv: int, message: str = "") -> None:
        super().__init__(f"{ck.CKR_NAMES.get(rv, hex(rv))}: {message}" if message else ck.CKR_NAMES.get(rv, hex(rv)))
        self.rv = rv


@dataclass
class Session:
    handle: int
    slot: int
    rw: bool
    find_results: list[int] | None = None
    find_pos: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenInfo:
    label: str
    manufacturer: str
    model: str
    serial: str
    flags: int
    session_count: int
    rw_session_count: int
    hardware_version: tuple[int, int]
    firmware_version: tuple[int, int]


class Token:
    """One slot (ID 0) holding the QRNG token.

    Args:
        service: the random-number service (a :class:`qrng.pipeline.Pipeline`, or any object with
            ``generate_into(buf)``, ``seed(bytes)``, ``report()`` and ``failed``), created at initialize.
        describe: label, model, serial, firmware for C_GetTokenInfo.
        certificates: DER certificates to expose as public CKO_CERTIFICATE objects (attestation).
        on_session_change: called with (handle, open) so the C fast path knows valid sessions.
    """

    def __init__(self, open_service: Callable[[], Any], describe: Callable[[Any], dict[str, str]],
                 certificates: Callable[[], list[bytes]] | None = None,
                 on_session_change: Callable[[int, bool], None] | None = None,
                 validate: Callable[[], Any] | None = None,
                 describe_slot: Callable[[], dict[str, str]] | None = None,
                 on_stale_output: Callable[[], None] | None = None) -> None:
        self._open_service = open_service
        self._describe_slot = describe_slot or (lambda: {"source_label": "qrng", "hardware": "no"})
        self._validate = validate or (lambda: None)
        self._opened = False
        self._describe = describe
        self._certificates = certificates or (lambda: [])
        self._on_session_change = on_session_change or (lambda h, o: None)
        # output buffered outside the token (the C fast path) must not be served: the service failed or was replaced
        self._on_stale_output = on_stale_output or (lambda: None)
        self._failed_at: float | None = None  # monotonic time a health failure was first seen (allow_reset)
        self._lock = threading.RLock()
        self.initialized = False
        self.service: Any = None
        self.config: Any = None
        self.service_error: Exception | None = None
        self._removed_at = 0.0  # monotonic time the source was found removed (or last looked for again)
        self._sessions: dict[int, Session] = {}
        self._next_session = 1
        self._login: int | None = None  # CKU_USER or CKU_SO for the whole application (5.5)
        self._objects: dict[int, TokenObject] = {}

    # --- general purpose (5.4) -----------------------------------------------------------------------
    def initialize(self) -> None:
        """Validate configuration now (a bad file fails C_Initialize); open the source on first use."""
        with self._lock:
            if self.initialized:
                raise CKRError(ck.CKR_CRYPTOKI_ALREADY_INITIALIZED)
            from qrng.errors import ConfigError
            try:
                self.config = self._validate()  # the one reading of the configuration until C_Finalize
            except ConfigError as exc:
                raise CKRError(ck.CKR_GENERAL_ERROR, f"configuration: {exc}") from exc
            self.service, self.service_error, self._opened = None, None, False
            self._objects = {}
            self.initialized = True

    REPLUG_POLL_S = 0.2  # a removed source is looked for again at most this often (by any call that needs it)

    def _look_for_replugged(self) -> None:
        """A removed source that is back is opened again, with its start-up tests (SP 800-90B 4.3), by the next
        call that needs the token: the token recovers by itself when the device is plugged back."""
        from qrng.errors import SourceRemoved
        if self.service is not None or not isinstance(self.service_error, SourceRemoved):
            return
        now = time.monotonic()
        if now - self._removed_at < self.REPLUG_POLL_S:
            return
        with self._lock:
            if self.service is None and isinstance(self.service_error, SourceRemoved):
                self._removed_at = now
                self._opened = False

    RESET_AFTER_S = 1.0  # a failed source is opened again at most this often, as qrngd does (REOPEN_S)

    def _look_for_recovery(self) -> None:
        """``health.allow_reset`` (README, "allow_reset"), the same in this module, the daemon-mode module and
        qrngd. true: a source whose health tests failed is opened again, with its start-up tests (SP 800-90B
        4.3), by the next call that needs the token at least RESET_AFTER_S after the failure was seen; it serves
        once they pass, and nothing generated before the failure is served after it. false: the failure stays
        until the module is initialised again (C_Finalize, then C_Initialize), as qrngd's stays until restart."""
        s = self.service
        if s is None or not getattr(s, "failed", False):
            self._failed_at = None
            return
        now = time.monotonic()
        if self._failed_at is None:
            self._failed_at = now
            self._on_stale_output()  # fail closed at once: buffered output is not served after a failure
            return
        config = getattr(s, "config", None)
        if config is None or not config.health.allow_reset or now - self._failed_at < self.RESET_AFTER_S:
            return
        with self._lock:
            if self.service is not s:
                return
            self.service, self.service_error, self._opened, self._failed_at = None, None, False, None
            self._on_stale_output()
        with contextlib.suppress(Exception):
            s.close()

    def _source_removed(self, exc: Exception) -> None:
        """The source vanished while in use: drop the service (its pipeline is failed closed) so the token shows
        not present (CKR_DEVICE_REMOVED, no CKF_TOKEN_PRESENT) until the device is back."""
        with self._lock:
            old, self.service, self.service_error = self.service, None, exc
            self._removed_at = time.monotonic()
        if old is not None and hasattr(old, "close"):
            with contextlib.suppress(Exception):
                old.close()

    def _ensure_service(self) -> None:
        """Open the entropy service once per C_Initialize; a failure is kept and reported as token state.

        ``_opened`` is set only after the service (or its error) is in place, and read under the lock unless
        it is already true, so a second thread never sees a half-opened token (issue 10 item 12). An
        installation problem (a missing Python dependency, unbuilt kernels) is not a device fault: it raises
        CKR_GENERAL_ERROR with the cause, each time, and the token stays unopened (item 13)."""
        if self._opened:
            self._look_for_replugged()
            self._look_for_recovery()
            if self._opened:
                return
        with self._lock:
            if self._opened:
                return
            from qrng.errors import ConfigError, NativeUnavailable
            service, error = None, None
            try:
                service = self._open_service()
                if hasattr(service, "startup"):
                    from qrng.errors import EntropyError
                    # SP 800-90B 4.3 start-up tests now, so token info shows a failing source at once; on a
                    # failure the pipeline is failed: CKF_ERROR_STATE, and CKR_DEVICE_ERROR on use.
                    with contextlib.suppress(EntropyError):
                        service.startup()
            except ConfigError as exc:
                raise CKRError(ck.CKR_GENERAL_ERROR, f"configuration: {exc}") from exc
            except ImportError as exc:
                if "partially initialized module" in str(exc):  # loaded again from inside an import of ours
                    raise CKRError(ck.CKR_GENERAL_ERROR, "re-entrant load: this module was loaded again from inside "
                                   "one of its own imports (an OpenSSL configuration that loads pkcs11-provider "
                                   f"with this module?); refused ({exc})") from exc
                raise CKRError(ck.CKR_GENERAL_ERROR, f"installation problem: {exc}") from exc
            except NativeUnavailable as exc:
                raise CKRError(ck.CKR_GENERAL_ERROR, f"installation problem: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - reported through CKF_ERROR_STATE and CKR_DEVICE_*
                error = exc
            self.service, self.service_error = service, error
            self._build_objects()
            self._opened = True

    def finalize(self) -> None:
        with self._lock:
            self._require_init()
            for h in list(self._sessions):
                self._on_session_change(h, False)
            self._sessions.clear()
            self._login = None
            if self.service is not None:
                try:
                    self.service.close()
                finally:
                    self.service = None
            self._opened = False
            self.initialized = False

    def after_fork_in_child(self) -> None:
        """Keep sessions valid in the child; the service drops DRBG state and reseeds from fresh samples.

        The lock is replaced first: a parent thread may have held it at fork(), and that thread is gone."""
        self._lock = threading.RLock()
        if self.service is not None and hasattr(self.service, "after_fork"):
            self.service.after_fork()

    def _require_init(self) -> None:
        if not self.initialized:
            raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED)

    def _slot(self, slot: int) -> None:
        self._require_init()
        if slot != SLOT_ID:
            raise CKRError(ck.CKR_SLOT_ID_INVALID, f"slot {slot}")

    def _session(self, handle: int) -> Session:
        self._require_init()
        s = self._sessions.get(handle)
        if s is None:
            raise CKRError(ck.CKR_SESSION_HANDLE_INVALID, f"session {handle}")
        return s

    # --- slot and token management (5.5) -----------------------------------------------------------------
    @property
    def token_present(self) -> bool:
        from qrng.errors import SourceRemoved
        self._ensure_service()
        return not isinstance(self.service_error, SourceRemoved)

    def slot_list(self, token_present: bool) -> list[int]:
        self._require_init()
        return [SLOT_ID]

    def slot_info(self, slot: int) -> tuple[str, str, int]:
        """Described from configuration: listing slots must not open (or wait for) the source."""
        self._slot(slot)
        from qrng.errors import SourceRemoved
        d = self._describe(self.service) if self._opened else self._describe_slot()
        flags = 0 if isinstance(self.service_error, SourceRemoved) else ck.CKF_TOKEN_PRESENT
        if d.get("hardware") == "yes":
            flags |= ck.CKF_HW_SLOT | ck.CKF_REMOVABLE_DEVICE
        # the source's own label (64 bytes hold the longest, the USB EMULATOR's, with its "not a physical device")
        return (d["source_label"], "qrng-ceremony", flags)

    def token_info(self, slot: int) -> TokenInfo:
        self._slot(slot)
        if not self.token_present:
            raise CKRError(ck.CKR_TOKEN_NOT_PRESENT, str(self.service_error))
        d = self._describe(self.service)
        flags = ck.CKF_RNG | ck.CKF_TOKEN_INITIALIZED | ck.CKF_USER_PIN_INITIALIZED
        if self.service is None or getattr(self.service, "failed", False):
            flags |= ck.CKF_ERROR_STATE
        rw = sum(1 for s in self._sessions.values() if s.rw)
        return TokenInfo(label=d["label"], manufacturer="qrng-ceremony", model=d["model"], serial=d["serial"],
                         flags=flags, session_count=len(self._sessions), rw_session_count=rw,
                         hardware_version=(1, 0), firmware_version=(0, 1))

    def mechanisms(self, slot: int) -> list[int]:
        self._slot(slot)
        return []

    def mechanism_info(self, slot: int, mechanism: int) -> None:
        self._slot(slot)
        raise CKRError(ck.CKR_MECHANISM_INVALID, f"mechanism {mechanism:#x}: this token only generates random data")

    def wait_for_slot_event(self, flags: int) -> int:
        self._require_init()
        if flags & ck.CKF_DONT_BLOCK:
            raise CKRError(ck.CKR_NO_EVENT)
        raise CKRError(ck.CKR_FUNCTION_NOT_SUPPORTED, "blocking slot events are not supported")

    # --- sessions (5.6) ------------------------------------------------------------------------------------
    def open_session(self, slot: int, flags: int) -> int:
        with self._lock:
            self._slot(slot)
            if not flags & ck.CKF_SERIAL_SESSION:
                raise CKRError(ck.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
            if not self.token_present:
                raise CKRError(ck.CKR_TOKEN_NOT_PRESENT, str(self.service_error))
            rw = bool(flags & ck.CKF_RW_SESSION)
            if not rw and self._login == ck.CKU_SO:
                raise CKRError(ck.CKR_SESSION_READ_WRITE_SO_EXISTS)
            h = self._next_session
            self._next_session += 1
            self._sessions[h] = Session(h, slot, rw)
            self._on_session_change(h, True)
            return h

    def close_session(self, handle: int) -> None:
        with self._lock:
            self._session(handle)
            del self._sessions[handle]
            self._on_session_change(handle, False)
            if not self._sessions:
                self._login = None  # closing the last session logs the user out (5.6)

    def close_all_sessions(self, slot: int) -> None:
        with self._lock:
            self._slot(slot)
            for h in list(self._sessions):
                self.close_session(h)

    def session_info(self, handle: int) -> tuple[int, int, int]:
        s = self._session(handle)
        if self._login == ck.CKU_SO:
            state = ck.CKS_RW_SO_FUNCTIONS
        elif self._login == ck.CKU_USER:
            state = ck.CKS_RW_USER_FUNCTIONS if s.rw else ck.CKS_RO_USER_FUNCTIONS
        else:
            state = ck.CKS_RW_PUBLIC_SESSION if s.rw else ck.CKS_RO_PUBLIC_SESSION
        return (s.slot, state, ck.CKF_SERIAL_SESSION | (ck.CKF_RW_SESSION if s.rw else 0))

    def login(self, handle: int, user_type: int, pin: bytes | None) -> None:
        """No PIN protects this token (its objects are public); logging in is accepted for consumers that do."""
        with self._lock:
            self._session(handle)
            if user_type not in (ck.CKU_SO, ck.CKU_USER, ck.CKU_CONTEXT_SPECIFIC):
                raise CKRError(ck.CKR_USER_TYPE_INVALID, f"user type {user_type}")
            if user_type == ck.CKU_CONTEXT_SPECIFIC:
                raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no operation needs context-specific login")
            if pin is not None and len(pin) > MAX_PIN:
                raise CKRError(ck.CKR_ARGUMENTS_BAD, "PIN too long")
            if self._login == user_type:
                raise CKRError(ck.CKR_USER_ALREADY_LOGGED_IN)
            if self._login is not None:
                raise CKRError(ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
            if user_type == ck.CKU_SO and any(not s.rw for s in self._sessions.values()):
                raise CKRError(ck.CKR_SESSION_READ_ONLY_EXISTS)
            self._login = user_type

    def logout(self, handle: int) -> None:
        with self._lock:
            self._session(handle)
            if self._login is None:
                raise CKRError(ck.CKR_USER_NOT_LOGGED_IN)
            self._login = None

    # --- objects (5.7) -------------------------------------------------------------------------------------
    def _build_objects(self) -> None:
        ders = self._certificates()
        self._objects = {h: certificate_object(h, der) for h, der in enumerate(ders, 1)}
        self._objects[len(ders) + 1] = health_object(len(ders) + 1, self._health_json)

    def _health_json(self) -> bytes:
        if self.service is None:
            return json.dumps({"state": "unavailable", "error": str(self.service_error)}).encode()
        return json.dumps(self.service.report().to_dict(), sort_keys=True, default=str).encode()

    def _object(self, handle: int) -> TokenObject:
        self._ensure_service()
        obj = self._objects.get(handle)
        if obj is None:
            raise CKRError(ck.CKR_OBJECT_HANDLE_INVALID, f"object {handle}")
        return obj

    def find_init(self, handle: int, template: list[tuple[int, bytes]]) -> None:
        with self._lock:
            s = self._session(handle)
            if s.find_results is not None:
                raise CKRError(ck.CKR_OPERATION_ACTIVE)
            self._ensure_service()
            found = []
            for h, obj in sorted(self._objects.items()):
                if all(t in obj.attributes and obj.value(t) == v for t, v in template):
                    found.append(h)
            s.find_results, s.find_pos = found, 0

    def find(self, handle: int, max_count: int) -> list[int]:
        with self._lock:
            s = self._session(handle)
            if s.find_results is None:
                raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED)
            out = s.find_results[s.find_pos:s.find_pos + max_count]
            s.find_pos += len(out)
            return out

    def find_final(self, handle: int) -> None:
        with self._lock:
            s = self._session(handle)
            if s.find_results is None:
                raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED)
            s.find_results = None

    def attribute_values(self, handle: int, obj_handle: int, types: list[int]) -> list[bytes | int]:
        """Values, or the CKR code explaining why one is unavailable (5.7 C_GetAttributeValue cases)."""
        self._session(handle)
        obj = self._object(obj_handle)
        out: list[bytes | int] = []
        for t in types:
            if t in obj.sensitive:
                out.append(ck.CKR_ATTRIBUTE_SENSITIVE)
            elif t not in obj.attributes:
                out.append(ck.CKR_ATTRIBUTE_TYPE_INVALID)
            else:
                out.append(obj.value(t))
        return out

    def object_size(self, handle: int, obj_handle: int) -> int:
        self._session(handle)
        obj = self._object(obj_handle)
        return sum(len(obj.value(t)) for t in obj.attributes)

    def init_token(self, slot: int) -> None:
        """C_InitToken (5.5): the QRNG token needs no initialisation."""
        self._slot(slot)
        raise CKRError(ck.CKR_FUNCTION_NOT_SUPPORTED, "the QRNG token needs no initialisation")

    def change_pin(self, handle: int) -> None:
        """C_InitPIN / C_SetPIN (5.5): the QRNG token has no PIN."""
        self._session(handle)
        raise CKRError(ck.CKR_FUNCTION_NOT_SUPPORTED, "the QRNG token has no PIN")

    def modify_object(self, handle: int, obj_handle: int | None) -> None:
        """C_CreateObject (obj_handle None), C_CopyObject, C_DestroyObject, C_SetAttributeValue (5.7).

        This token creates and changes no objects, so the answer is CKR_FUNCTION_NOT_SUPPORTED in read-only and
        read-write sessions alike (CKR_SESSION_READ_ONLY would suggest a read-write session could do it)."""
        self._session(handle)
        if obj_handle is not None:
            self._object(obj_handle)
        raise CKRError(ck.CKR_FUNCTION_NOT_SUPPORTED, "this token's objects cannot be created or changed")

    # --- random numbers (5.15) ----------------------------------------------------------------------------
    def _service(self) -> Any:
        self._ensure_service()
        if self.service is None:
            from qrng.errors import SourceRemoved
            code = ck.CKR_DEVICE_REMOVED if isinstance(self.service_error, SourceRemoved) else ck.CKR_DEVICE_ERROR
            raise CKRError(code, f"entropy source unavailable: {self.service_error}")
        return self.service

    def _use(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn(service)``; a source found removed on the way marks the token removed (then re-raised)."""
        from qrng.errors import PipelineFailed, SourceRemoved
        service = self._service()
        try:
            fn(service)
        except SourceRemoved as exc:
            self._source_removed(exc)
            raise
        except PipelineFailed as exc:
            cause = getattr(service, "failure", None)
            if isinstance(cause, SourceRemoved):
                self._source_removed(cause)
                raise cause from exc
            self._look_for_recovery()  # notes the failure (and wipes buffered output) now
            raise
        except Exception:
            if getattr(service, "failed", False):  # a health test failed in this call
                self._look_for_recovery()
            raise

    def seed_random(self, handle: int, data: bytes) -> None:
        self._session(handle)
        self._use(lambda s: s.seed(data))

    def check_session(self, handle: int) -> None:
        """CKR_SESSION_HANDLE_INVALID (or not initialised) unless ``handle`` is an open session."""
        self._session(handle)

    def generate_random_into(self, handle: int, buf: Any) -> None:
        """C_GenerateRandom (5.15); a zero-length request only checks the session."""
        self._session(handle)
        if len(buf):
            self._use(lambda s: s.generate_into(buf))

    def refill(self, buf: Any) -> None:
        """Fill the C fast-path buffer (no session: the C side checked it)."""
        self._require_init()
        self._use(lambda s: s.generate_into(buf))


