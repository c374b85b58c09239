"""Wires the token to the entropy core: configuration is read in C_Initialize, never at load time.

Configuration: ``$QRNG_CONFIG``, else ``/etc/qrng/qrng.yaml``, else the built-in simulator default.
The attestation certificate exposed as a token object is ``$QRNG_ATTESTATION_CERT`` or the file named
by the configuration's ``attestation.certificate`` (DER or PEM).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backend import Backend

__all__ = ["describe", "make_backend", "open_pipeline"]


def open_pipeline(cfg: Any) -> Any:
    """The entropy service: a pipeline on the configured source (the module in daemon mode, which takes seed
    material from qrngd instead, is the C-only build/libqrng-pkcs11-qrngd.so)."""
    import_serving(cfg)
    from qrng.pipeline import Pipeline
    return Pipeline(cfg)


def describe(service: Any) -> dict[str, str]:
    """Label, model and serial for C_GetTokenInfo. A simulator says so in its model string."""
    if service is None:
        return {"label": "qrng (source unavailable)", "model": "unavailable", "serial": "none",
                "source_label": "source unavailable", "hardware": "no"}
    info = service.info
    if info.simulator and info.kind == "usb":
        model = "USB-EMULATOR"
    elif info.simulator:
        model = "QRNG-SIMULATOR"
    elif info.quantum:
        model = "QRNG " + info.kind
    else:
        model = "NONQUANTUM " + info.kind
    return {"label": f"qrng {info.serial}"[:32], "model": model[:16], "serial": info.serial[:16],
            "source_label": info.label, "hardware": "no" if info.simulator or info.kind == "file" else "yes"}


def certificates(cfg: Any) -> list[bytes]:
    path = os.environ.get("QRNG_ATTESTATION_CERT")
    if not path:
        cert = cfg.attestation.certificate
        path = str(cert) if cert else ""
    if not path or not Path(path).exists():
        return []
    data = Path(path).read_bytes()
    if data.startswith(b"-----BEGIN"):  # the device certificate is the first of the chain
        from qrng import _openssl
        _openssl.prepare()
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        return [x509.load_pem_x509_certificates(data)[0].public_bytes(Encoding.DER)]
    return [data]


def describe_slot(cfg: Any) -> dict[str, str]:
    """The slot's description from configuration alone (no source is opened)."""
    src = cfg.source
    if src.type == "simulator":
        label = f"SIMULATOR {src.simulator.serial} (not a physical device)"
    elif src.type == "file":
        label = f"raw sample file {Path(src.path).name} (non-quantum source)"
    elif src.type == "device":
        label = f"{src.path}" + ("" if src.quantum else " (non-quantum source)")
    elif src.emulator:
        label = f"USB EMULATOR {src.vendor_id:04x}:{src.product_id:04x} (software device, not a physical device)"
    else:
        label = f"USB QRNG {src.vendor_id:04x}:{src.product_id:04x}"
    hardware = "no" if src.type in ("simulator", "file") or src.emulator else "yes"
    return {"source_label": label, "hardware": hardware}


def import_serving(cfg: Any) -> None:
    """Import now what serving ``cfg`` needs, before the source is opened and its threads start.

    Nothing on the serving path imports lazily after this: a host that forks while another of its threads is
    inside a first, lazy import would leave the child waiting for that module's import lock forever (found by
    the PKCS#11 ABI fuzzer). Missing dependencies thus also show at once, as an installation problem."""
    import importlib

    modules = ["qrng.pipeline", "qrng.sources", "qrng.native",
               {"simulator": "qrng.sources.simulator", "file": "qrng.sources.file", "device": "qrng.sources.device",
                "usb": "qrng.sources.usb"}[cfg.source.type]]
    from qrng import native
    if cfg.attestation.certificate or os.environ.get("QRNG_ATTESTATION_CERT") or not native.available():
        # the certificate token object, or the DRBG's fallback backend: cryptography, without OPENSSL_CONF
        from qrng import _openssl
        _openssl.prepare()
        modules += ["cryptography.x509", "cryptography.hazmat.primitives.hashes",
                    "cryptography.hazmat.primitives.serialization", "cryptography.hazmat.primitives.ciphers"]
    if cfg.assessment.every_samples:
        modules.append("qrng.estimate.nonid")
    for name in modules:
        importlib.import_module(name)
    if cfg.extractor.type == "toeplitz":
        native.load()


def make_backend(on_stale_output: Callable[[], None] | None = None, import_now: bool = True) -> Backend:
    """The backend over the configuration that C_Initialize reads: the pipeline, the slot's description and the
    certificate objects all come from that one reading.

    ``import_now``: import what serving needs at C_Initialize (:func:`import_serving`). The module does so in a
    Python host, whose os.fork() takes none of the module's locks; in a C host fork() takes the token lock, under
    which every entry runs, so the imports wait until the source is first opened (a fast C_Initialize)."""
    holder: dict[str, Any] = {}

    def read() -> Any:
        from qrng.config import load_config
        holder["config"] = cfg = load_config()
        if import_now:
            import_serving(cfg)
        return cfg

    return Backend(lambda: open_pipeline(holder["config"]), describe, lambda: certificates(holder["config"]),
                   read, lambda: describe_slot(holder["config"]), on_stale_output)
