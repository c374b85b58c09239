"""The in-process module's backend, the Python half: the entropy service behind the C token core.

The C token core (csrc/token/) owns the slot, sessions, login, objects and locking; it calls the backend for
five things (csrc/token/token.h): initialise (read the configuration once), describe the token, generate,
seed, report health. :class:`Backend` does those over the entropy pipeline, and keeps the service's life:
opened on first use with its start-up tests, failed closed on a health-test failure (and reset after
``health.allow_reset``), marked removed when the device goes and reopened when it is back. No cffi here: the
boundary (``_boundary.py``) converts arguments and maps exceptions to CK_RV codes in one table. Every call
arrives under the token core's lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ckdefs as ck

__all__ = ["Backend", "CKRError", "TokenDescription"]


class CKRError(Exception):
    """A PKCS#11 error with its CK_RV; the message explains it on stderr."""

    def __init__(self, rv: int, message: str = "") -> None:
        super().__init__(f"{ck.CKR_NAMES.get(rv, hex(rv))}: {message}" if message else ck.CKR_NAMES.get(rv, hex(rv)))
        self.rv = rv


@dataclass(frozen=True)
class TokenDescription:
    """What C_GetSlotInfo and C_GetTokenInfo show (the C core pads and cuts the texts)."""
    slot_description: str
    label: str
    model: str
    serial: str
    error_state: bool
    absent: bool
    hardware: bool


class Backend:
    """The entropy service behind the token.

    Args:
        service: the random-number service (a :class:`qrng.pipeline.Pipeline`, or any object with
            ``generate_into(buf)``, ``seed(bytes)``, ``report()`` and ``failed``), created at initialize.
        describe: label, model, serial, firmware for C_GetTokenInfo.
        certificates: DER certificates to expose as public CKO_CERTIFICATE objects (attestation).
        validate: reads and checks the configuration (once per C_Initialize) and returns it.
        describe_slot: the slot's description from the configuration alone (no source is opened).
        on_stale_output: called when output buffered outside the backend (the C fast path) must not be served.
    """

    def __init__(self, open_service: Callable[[], Any], describe: Callable[[Any], dict[str, str]],
                 certificates: Callable[[], list[bytes]] | None = None,
                 validate: Callable[[], Any] | None = None,
                 describe_slot: Callable[[], dict[str, str]] | None = None,
                 on_stale_output: Callable[[], None] | None = None) -> None:
        self._open_service = open_service
        self._describe_slot = describe_slot or (lambda: {"source_label": "qrng", "hardware": "no"})
        self._validate = validate or (lambda: None)
        self._opened = False
        self._describe = describe
        self._certificates = certificates or (lambda: [])
        # output buffered outside the token (the C fast path) must not be served: the service failed or was replaced
        self._on_stale_output = on_stale_output or (lambda: None)
        self._failed_at: float | None = None  # monotonic time a health failure was first seen (allow_reset)
        self.initialized = False
        self.service: Any = None
        self.config: Any = None
        self.service_error: Exception | None = None
        self._removed_at = 0.0  # monotonic time the source was found removed (or last looked for again)
        self._certs: list[bytes] = []

    # --- init and finalize ---------------------------------------------------------------------------
    def initialize(self) -> None:
        """Validate configuration now (a bad file fails C_Initialize); open the source on first use."""
        if self.initialized:
            raise CKRError(ck.CKR_CRYPTOKI_ALREADY_INITIALIZED)
        from qrng.errors import ConfigError
        try:
            self.config = self._validate()  # the one reading of the configuration until C_Finalize
            self._certs = self._certificates()
        except ConfigError as exc:
            raise CKRError(ck.CKR_GENERAL_ERROR, f"configuration: {exc}") from exc
        except OSError as exc:
            raise CKRError(ck.CKR_GENERAL_ERROR, f"attestation certificate: {exc}") from exc
        self.service, self.service_error, self._opened = None, None, False
        self.initialized = True

    def certificates(self) -> list[bytes]:
        """The attestation certificates (DER) read at initialize, for the token's certificate objects."""
        return list(self._certs)

    REPLUG_POLL_S = 0.2  # a removed source is looked for again at most this often (by any call that needs it)

    def _look_for_replugged(self) -> None:
        """A removed source that is back is opened again, with its start-up tests (SP 800-90B 4.3), by the next
        call that needs the token: the token recovers by itself when the device is plugged back."""
        from qrng.errors import SourceRemoved
        if self.service is not None or not isinstance(self.service_error, SourceRemoved):
            return
        now = time.monotonic()
        if now - self._removed_at >= self.REPLUG_POLL_S:
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
        self.service, self.service_error, self._opened, self._failed_at = None, None, False, None
        self._on_stale_output()
        with contextlib.suppress(Exception):
            s.close()

    def _source_removed(self, exc: Exception) -> None:
        """The source vanished while in use: drop the service (its pipeline is failed closed) so the token shows
        not present (CKR_DEVICE_REMOVED, no CKF_TOKEN_PRESENT) until the device is back."""
        old, self.service, self.service_error = self.service, None, exc
        self._removed_at = time.monotonic()
        if old is not None and hasattr(old, "close"):
            with contextlib.suppress(Exception):
                old.close()

    def _ensure_service(self) -> None:
        """Open the entropy service once per C_Initialize; a failure is kept and reported as token state.

        An installation problem (a missing Python dependency, unbuilt kernels) is not a device fault: it raises
        CKR_GENERAL_ERROR with the cause, each time, and the service stays unopened (issue 10 item 13)."""
        if self._opened:
            self._look_for_replugged()
            self._look_for_recovery()
            if self._opened:
                return
        self._require_init()
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
        self._opened = True

    def finalize(self) -> None:
        self._require_init()
        try:
            if self.service is not None:
                self.service.close()
        finally:
            self.service, self._opened, self.initialized = None, False, False

    def after_fork_in_child(self) -> None:
        """The service drops its DRBG state and reseeds from fresh samples (the child never serves the
        parent's state)."""
        if self.service is not None and hasattr(self.service, "after_fork"):
            self.service.after_fork()

    def _require_init(self) -> None:
        if not self.initialized:
            raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED)

    # --- the token's description (C_GetSlotInfo, C_GetTokenInfo, C_OpenSession) -------------------------------
    def describe(self, open_source: bool) -> TokenDescription:
        """The token now. ``open_source`` False (C_GetSlotInfo): from what is known, and from the configuration
        if the source was never opened: listing slots must not open (or wait for) the source."""
        from qrng.errors import SourceRemoved
        self._require_init()
        if open_source:
            self._ensure_service()
        d = self._describe(self.service) if self._opened else self._describe_slot()
        failed = self.service is None or bool(getattr(self.service, "failed", False))
        return TokenDescription(
            slot_description=d["source_label"], label=d.get("label", ""), model=d.get("model", ""),
            serial=d.get("serial", ""), error_state=failed, absent=isinstance(self.service_error, SourceRemoved),
            hardware=d.get("hardware") == "yes")

    def health_json(self) -> bytes:
        """The health report object's CKA_VALUE."""
        import json
        self._ensure_service()
        if self.service is None:
            return json.dumps({"state": "unavailable", "error": str(self.service_error)}).encode()
        return json.dumps(self.service.report().to_dict(), sort_keys=True, default=str).encode()

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

    def seed(self, data: bytes) -> None:
        """C_SeedRandom: the caller's bytes as additional input, never credited."""
        self._use(lambda s: s.seed(data))

    def generate_into(self, buf: Any, on_start: Callable[[], None] = lambda: None) -> None:
        """C_GenerateRandom, or a refill of the C fast path's buffer; ``on_start`` is called just before the
        service writes into ``buf`` (a failure before it leaves the caller's buffer as it was)."""
        def fill(service: Any) -> None:
            on_start()
            service.generate_into(buf)
        self._use(fill)
