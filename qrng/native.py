"""The one loader of the compiled kernels (qrng._native, built from csrc/ by qrng._native_build).

Every user of the kernels calls :func:`load`. When the extension is missing it raises
:class:`~qrng.errors.NativeUnavailable` (an installation problem, not an entropy failure). The only pure-Python
fallback is CTR_DRBG through ``cryptography`` (:func:`available` tells it, and the DRBG logs it once); the
Toeplitz extractor and the SP 800-90B estimators have none, because their Python versions are orders of
magnitude slower.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

from .errors import NativeUnavailable

__all__ = ["available", "load"]

log = logging.getLogger("qrng.native")


@functools.cache
def _import() -> Any:
    try:
        return importlib.import_module("qrng._native")
    except ImportError as exc:
        return exc


def load() -> Any:
    """The cffi module (``.ffi``, ``.lib``); raises NativeUnavailable naming the fix when it is not built."""
    mod = _import()
    if isinstance(mod, ImportError):
        raise NativeUnavailable(f"the compiled kernels (qrng._native) are not built ({mod}); run `make native`")
    return mod


def available() -> bool:
    return not isinstance(_import(), ImportError)


@functools.cache
def fallback(what: str, instead: str) -> None:
    """Log, once per kind, that a pure-Python fallback is in use."""
    log.warning("qrng._native is not built: %s runs on %s", what, instead)
