"""SP 800-90A Rev. 1 DRBGs on `cryptography`: CTR_DRBG (AES-256, no derivation function) and
HMAC_DRBG (SHA-256). Pure state machines: entropy is passed in by the caller; no I/O.

Reseed interval and prediction resistance follow 9.3.1: a generate request past the interval, or one
with prediction resistance, must be given fresh ``entropy_input`` or it raises ReseedRequired.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import native
from .errors import EntropyError

__all__ = ["CtrDrbg", "Drbg", "DrbgStatus", "HmacDrbg", "ReseedRequired", "fill", "make_drbg"]


class ReseedRequired(EntropyError):
    """The DRBG needs fresh entropy (reseed interval reached or prediction resistance requested)."""


@dataclass(frozen=True)
class DrbgStatus:
    mechanism: str
    security_strength: int
    reseed_counter: int
    reseed_interval: int
    reseeds: int
    bytes_generated: int


class Drbg(Protocol):
    mechanism: str
    seed_entropy_bytes: int
    max_request: int

    def _generate_one(self, n: int, additional_input: bytes, entropy_input: bytes | None, pr: bool) -> bytes: ...

    def reseed(self, entropy_input: bytes, additional_input: bytes = b"") -> None: ...

    def generate(self, n: int, additional_input: bytes = b"", entropy_input: bytes | None = None,
                 prediction_resistance: bool = False) -> bytes: ...

    def status(self) -> DrbgStatus: ...

    def needs_reseed(self) -> bool: ...

    def zeroize(self) -> None: ...


_ZERO_BLOCK = bytes(64 * 1024 + 64)
_ZERO_VIEW = memoryview(_ZERO_BLOCK)


def _aes_ctr(key: bytes, counter: int) -> Any:
    """AES-CTR through ``cryptography`` (the fallback backend; imported only when used)."""
    from . import _openssl
    _openssl.prepare()
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    return Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()


def _native_lib(required: bool) -> Any:
    """The kernels, or None with the fallback logged; ``required`` turns a missing build into an error."""
    if required or native.available():
        return native.load()
    native.fallback("CTR_DRBG", "the cryptography package (AES-CTR through its OpenSSL)")
    return None


class CtrDrbg:
    """CTR_DRBG with AES-256 and no derivation function (SP 800-90A 10.2.1).

    seedlen = 384 bits: entropy input is 48 bytes of full entropy; personalization and additional
    inputs are at most 48 bytes (zero-padded), as 10.2.1.3.1 requires without a df. The state is
    Key || V in one 48-byte buffer. Generate runs in qrng._native (OpenSSL EVP, one re-keyed context
    per thread) when it is built, else through ``cryptography``; both pass the CAVP vectors.
    """

    mechanism = "CTR_DRBG(AES-256, no df)"
    seed_entropy_bytes = 48
    max_request = 1 << 16  # 2^19 bits per request (Table 3)
    security_strength = 256

    def __init__(self, entropy_input: bytes, personalization: bytes = b"", reseed_interval: int = 1 << 20,
                 native: bool | None = None) -> None:
        if len(entropy_input) != 48:
            raise ValueError("CTR_DRBG (no df) entropy input must be exactly 384 bits (48 bytes)")
        if not 1 <= reseed_interval <= 1 << 48:
            raise ValueError("reseed interval must be in [1, 2^48]")
        lib = _native_lib(required=bool(native)) if native is not False else None
        self._native = lib
        self.backend = "openssl-evp (qrng._native)" if lib is not None else "cryptography"
        self._state = bytearray(48)  # Key = 0^256, V = 0^128 (10.2.1.3.1)
        self.reseed_interval = reseed_interval
        self._update(_xor(entropy_input, _pad48(personalization, "personalization string")))
        self._counter = 1
        self._reseeds = 0
        self._generated = 0

    def _update(self, provided: bytes) -> None:  # 10.2.1.2
        if self._native is not None:
            if self._native.lib.qrng_ctr_drbg_update(self._native.ffi.from_buffer(self._state), provided) != 0:
                raise EntropyError("CTR_DRBG update failed in OpenSSL")
            return
        key, v = bytes(self._state[:32]), int.from_bytes(self._state[32:], "big")
        enc = _aes_ctr(key, (v + 1) % (1 << 128))
        self._state[:] = _xor(enc.update(_ZERO_VIEW[:48]), provided)

    def reseed(self, entropy_input: bytes, additional_input: bytes = b"") -> None:  # 10.2.1.4.1
        if len(entropy_input) != 48:
            raise ValueError("CTR_DRBG (no df) entropy input must be exactly 384 bits (48 bytes)")
        self._update(_xor(entropy_input, _pad48(additional_input, "additional input")))
        self._counter = 1
        self._reseeds += 1

    def generate(self, n: int, additional_input: bytes = b"", entropy_input: bytes | None = None,
                 prediction_resistance: bool = False) -> bytes:
        """9.3.1 + 10.2.1.5.1; requests larger than 2^19 bits are split into several generates."""
        if n < 0:
            raise ValueError("n must be >= 0")
        out = bytearray(n)
        self.generate_into(memoryview(out), additional_input, entropy_input, prediction_resistance)
        return bytes(out)

    def _generate_one(self, n: int, additional_input: bytes, entropy_input: bytes | None, pr: bool) -> bytes:
        out = bytearray(n)
        self._generate_one_into(memoryview(out), additional_input, entropy_input, pr)
        return bytes(out)

    def _generate_one_into(self, out: memoryview, additional_input: bytes, entropy_input: bytes | None,
                           pr: bool) -> None:
        """One generate request of at most 2^19 bits (10.2.1.5.1, with 9.3.1's reseed rules).

        The output blocks are AES(K, V+1) ... AES(K, V+k) and the Update that follows reads the next
        three counter blocks, so one CTR stream of k + 3 blocks serves both, written straight into ``out``.
        """
        if len(out) > self.max_request:
            raise ValueError("a single CTR_DRBG request is at most 2^19 bits")
        if pr or self._counter > self.reseed_interval:
            if entropy_input is None:
                raise ReseedRequired("prediction resistance" if pr else "reseed interval reached")
            self.reseed(entropy_input, additional_input)
            additional_input = b""
        add = _pad48(additional_input, "additional input") if additional_input else b""
        n = len(out)
        if self._native is not None:
            ffi = self._native.ffi
            rc = self._native.lib.qrng_ctr_drbg_generate(ffi.from_buffer(self._state), add or ffi.NULL,
                                                         ffi.from_buffer(out, require_writable=True), n)
            if rc != 0:
                raise EntropyError(f"CTR_DRBG generate failed in OpenSSL ({rc})")
        else:
            if add:
                self._update(add)
            nblocks = (n + 15) // 16
            key, v = bytes(self._state[:32]), int.from_bytes(self._state[32:], "big")
            enc = _aes_ctr(key, (v + 1) % (1 << 128))
            bulk = max(0, (n - 15) // 16 * 16)  # update_into needs 15 bytes of slack in the output
            if bulk:
                enc.update_into(_ZERO_VIEW[:bulk], out)
            tail = enc.update(_ZERO_VIEW[:nblocks * 16 - bulk + 48])
            out[bulk:n] = tail[:n - bulk]
            self._state[:] = _xor(tail[-48:], add) if add else tail[-48:]
        self._counter += 1
        self._generated += n

    def generate_into(self, out: memoryview, additional_input: bytes = b"", entropy_input: bytes | None = None,
                      prediction_resistance: bool = False) -> None:
        """Fill ``out`` (a writable buffer) with DRBG output, split into requests of at most 2^19 bits."""
        view = memoryview(out).cast("B")
        first = True
        pos = 0
        while first or pos < len(view):
            chunk = min(self.max_request, len(view) - pos)
            self._generate_one_into(view[pos:pos + chunk], additional_input, entropy_input if first else None,
                                    prediction_resistance and first)
            pos += chunk
            first = False

    def status(self) -> DrbgStatus:
        return DrbgStatus(self.mechanism, self.security_strength, self._counter, self.reseed_interval,
                          self._reseeds, self._generated)

    def needs_reseed(self) -> bool:
        """True when the next generate request must reseed first (reseed counter past the interval)."""
        return self._counter > self.reseed_interval

    def zeroize(self) -> None:
        self._state[:] = bytes(48)


class HmacDrbg:
    """HMAC_DRBG with SHA-256 (SP 800-90A 10.1.2)."""

    mechanism = "HMAC_DRBG(SHA-256)"
    seed_entropy_bytes = 32
    max_request = 1 << 16
    security_strength = 256

    def __init__(self, entropy_input: bytes, nonce: bytes = b"", personalization: bytes = b"",
                 reseed_interval: int = 1 << 20) -> None:
        if len(entropy_input) < 32:
            raise ValueError("HMAC_DRBG entropy input must be at least 256 bits")
        self._key = bytes(32)
        self._v = b"\x01" * 32
        self.reseed_interval = reseed_interval
        self._update(entropy_input + nonce + personalization)
        self._counter = 1
        self._reseeds = 0
        self._generated = 0

    def _update(self, provided: bytes) -> None:  # 10.1.2.2
        self._key = hmac.new(self._key, self._v + b"\x00" + provided, hashlib.sha256).digest()
        self._v = hmac.new(self._key, self._v, hashlib.sha256).digest()
        if provided:
            self._key = hmac.new(self._key, self._v + b"\x01" + provided, hashlib.sha256).digest()
            self._v = hmac.new(self._key, self._v, hashlib.sha256).digest()

    def reseed(self, entropy_input: bytes, additional_input: bytes = b"") -> None:  # 10.1.2.4
        if len(entropy_input) < 32:
            raise ValueError("HMAC_DRBG entropy input must be at least 256 bits")
        self._update(entropy_input + additional_input)
        self._counter = 1
        self._reseeds += 1

    def generate(self, n: int, additional_input: bytes = b"", entropy_input: bytes | None = None,
                 prediction_resistance: bool = False) -> bytes:
        return _split_requests(self, n, additional_input, entropy_input, prediction_resistance)

    def _generate_one(self, n: int, additional_input: bytes, entropy_input: bytes | None, pr: bool) -> bytes:
        if pr or self._counter > self.reseed_interval:  # 9.3.1 step 7
            if entropy_input is None:
                raise ReseedRequired("prediction resistance" if pr else "reseed interval reached")
            self.reseed(entropy_input, additional_input)
            additional_input = b""
        if additional_input:
            self._update(additional_input)
        out = bytearray()
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        while len(out) < n:
            h = mac.copy()
            h.update(self._v)
            self._v = h.digest()
            out += self._v
        self._update(additional_input)
        self._counter += 1
        self._generated += n
        return bytes(out[:n])

    def status(self) -> DrbgStatus:
        return DrbgStatus(self.mechanism, self.security_strength, self._counter, self.reseed_interval,
                          self._reseeds, self._generated)

    def needs_reseed(self) -> bool:
        """True when the next generate request must reseed first (reseed counter past the interval)."""
        return self._counter > self.reseed_interval

    def zeroize(self) -> None:
        self._key, self._v = bytes(32), bytes(32)


def _split_requests(drbg: CtrDrbg | HmacDrbg, n: int, additional_input: bytes, entropy_input: bytes | None,
                    prediction_resistance: bool) -> bytes:
    """Serve ``n`` bytes as successive requests of at most max_request bytes (2^19 bits).

    Fresh entropy and prediction resistance apply to the first request; later ones proceed normally.
    """
    parts = []
    done = 0
    first = True
    while first or done < n:
        chunk = min(drbg.max_request, n - done)
        parts.append(drbg._generate_one(chunk, additional_input, entropy_input if first else None,  # noqa: SLF001
                                        prediction_resistance and first))
        done += chunk
        first = False
    return parts[0] if len(parts) == 1 else b"".join(parts)


def fill(drbg: Drbg, view: memoryview, additional_input: bytes, prediction_resistance: bool,
         fresh_entropy: Callable[[int], bytes]) -> int:
    """Fill ``view`` as SP 800-90A generate requests of at most ``max_request`` bytes (2^19 bits); before each one
    the DRBG is reseeded from ``fresh_entropy(seed_entropy_bytes)`` when prediction resistance is asked for or the
    reseed interval is reached (9.3.1). Additional input longer than 48 bytes is hashed to 48 for CTR_DRBG
    (no derivation function, 10.2.1). Zero-copy for CTR_DRBG. Returns how many reseeds were made."""
    if additional_input and len(additional_input) > 48 and isinstance(drbg, CtrDrbg):
        additional_input = hashlib.sha384(additional_input).digest()
    pos, first, reseeds = 0, True, 0
    while first or pos < len(view):
        chunk = view[pos:pos + drbg.max_request] if pos or len(view) > drbg.max_request else view
        needs = prediction_resistance or drbg.needs_reseed()
        fresh = fresh_entropy(drbg.seed_entropy_bytes) if needs else None
        if isinstance(drbg, CtrDrbg):
            drbg._generate_one_into(chunk, additional_input, fresh, needs)  # noqa: SLF001 - this module's class
        else:
            assert isinstance(drbg, HmacDrbg)
            chunk[:] = drbg._generate_one(len(chunk), additional_input, fresh, needs)  # noqa: SLF001 - same
        reseeds += needs
        pos += len(chunk)
        first = False
    return reseeds


def _pad48(data: bytes, what: str) -> bytes:
    if len(data) > 48:
        raise ValueError(f"{what} must be at most 384 bits for CTR_DRBG without a derivation function")
    return data + bytes(48 - len(data))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def make_drbg(kind: str, entropy: bytes, personalization: bytes = b"", reseed_interval: int = 1 << 20) -> Drbg:
    """Instantiate by name: ``ctr_aes256`` (48 bytes of entropy) or ``hmac_sha256`` (48: 32 + 16 nonce)."""
    if kind == "ctr_aes256":
        return CtrDrbg(entropy, personalization, reseed_interval)
    if kind == "hmac_sha256":
        return HmacDrbg(entropy[:32], entropy[32:], personalization, reseed_interval)
    raise ValueError(f"unknown DRBG {kind!r}")
