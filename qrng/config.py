"""The entropy-core configuration: one YAML file shared by the CLI, the PKCS#11 module and ceremonies.

Resolution order for the file: an explicit path, then ``$QRNG_CONFIG``, then ``/etc/qrng/qrng.yaml``,
then the built-in default (the simulator, clearly labelled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .sources.model import FAULT_KINDS, Fault, SimulatorConfig
from .yaml_input import Fields, load_yaml_text, parse_file

__all__ = ["DEFAULT_PATH", "AttestationConfig", "EntropyConfig", "ExtractorConfig", "DrbgConfig", "HealthConfig",
           "SourceConfig", "load_config", "parse_config", "parse_fault"]

DEFAULT_PATH = Path("/etc/qrng/qrng.yaml")
# qrngd's periodic SP 800-90B assessment when a source's configuration does not set assessment.every_samples:
# the first once the window is full, then every 2**26 samples (about a minute at 1 Msample/s) but at most once a
# minute (one assessment of a million 8-bit samples takes about 4 s of one core, in qrngd's background thread: a
# device streaming 50 MB/s would otherwise keep a core busy)
DAEMON_ASSESS_EVERY = 1 << 26
DAEMON_ASSESS_MIN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class SourceConfig:
    type: str = "simulator"
    claimed_min_entropy: float | None = None
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    path: str = ""
    bits_per_sample: int = 8
    packed: bool = False
    loop: bool = False
    quantum: bool = False
    vendor_id: int = 0
    product_id: int = 0
    endpoint: int | None = None  # usb: None = the interface's first bulk IN endpoint
    serial: str | None = None
    interface: int = 0           # usb
    raw: bool = False            # usb: read as a plain bulk RNG even if it speaks the protocol
    detach_kernel_driver: bool = False
    emulator: str = ""           # usb: the EMULATOR's state folder (docs/usb-protocol.md), never a device
    stream: bool = False        # file: the path is a FIFO or device, read as a stream
    read_timeout: float = 5.0   # file streams and devices: seconds of silence before a read fails


@dataclass(frozen=True)
class HealthConfig:
    alpha_log2: float = -20
    startup_samples: int = 1024
    block_samples: int = 65536
    allow_reset: bool = True


@dataclass(frozen=True)
class ExtractorConfig:
    type: str = "toeplitz"
    block_bits: int = 1 << 20
    eps_log2: float = -100
    seed_file: str | None = None


@dataclass(frozen=True)
class AssessmentConfig:
    """Periodic SP 800-90B assessment of retained samples. ``every_samples``: 0 switches it off; absent (None),
    the host decides: qrngd assesses every :data:`DAEMON_ASSESS_EVERY` samples (the entropy-floor SLO is
    measured by default), a pipeline inside a consumer's process does not (a 1-million-sample assessment takes
    seconds of CPU that a host process did not ask for)."""

    every_samples: int | None = None
    window_samples: int = 1_000_000
    max_shortfall: float = 0.0
    min_interval_s: float = 0.0  # and at most this often (a fast device reaches every_samples in seconds)


@dataclass(frozen=True)
class DrbgConfig:
    type: str = "ctr_aes256"
    reseed_interval: int = 1024
    prediction_resistance: bool = False


@dataclass(frozen=True)
class AttestationConfig:
    """The device's attestation certificate (chain, PEM) and, for the simulator only, its signing key."""

    certificate: Path | None = None
    key: Path | None = None
    firmware_proof: Path | None = None  # the vendor's c2sp.org/tlog-proof for the device's firmware (USB)


@dataclass(frozen=True)
class EntropyConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    drbg: DrbgConfig = field(default_factory=DrbgConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)
    origin: str = "<built-in default>"

    def with_faults(self, faults: tuple[Fault, ...]) -> EntropyConfig:
        sim = replace(self.source.simulator, faults=self.source.simulator.faults + faults)
        return replace(self, source=replace(self.source, simulator=sim))


def parse_fault(value: Any, path: str) -> Fault:
    """A fault is a mapping {kind, start, ...params} or the string ``kind[@start]``."""
    if isinstance(value, str):
        kind, _, start = value.partition("@")
        try:
            return Fault(kind, int(start) if start else 0)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
    f = Fields(value, path)
    kind = f.text("kind", choices=tuple(FAULT_KINDS))
    start = f.integer("start", 0, lo=0)
    params = {k: f.number(k) for k in list(value) if k not in ("kind", "start")}
    f.done()
    try:
        return Fault(kind, start, params)
    except ConfigError as exc:
        raise ConfigError(path, str(exc)) from None


def _source(f: Fields) -> SourceConfig:
    kind = f.text("type", "simulator", choices=("simulator", "file", "device", "usb"))
    h = f.number("claimed_min_entropy", None, lo=1e-6, hi=8)
    if kind == "simulator":
        faults = tuple(parse_fault(v, f"{f.p('faults')}[{i}]") for i, v in enumerate(f.items("faults", [])))
        sim = SimulatorConfig(
            adc_bits=f.integer("adc_bits", 8, lo=1, hi=8), noise_rms=f.number("noise_rms", 1.0, lo=1e-9),
            gain=f.number("gain", 40.0, lo=1e-9), offset=f.number("offset", 127.5),
            seed=f.integer("seed", None), serial=f.text("serial", "SIM-0001"), faults=faults)
        f.done()
        return SourceConfig(type=kind, claimed_min_entropy=h, simulator=sim, bits_per_sample=sim.adc_bits)
    if h is None and kind != "usb":
        raise ConfigError(f.p("claimed_min_entropy"), f"is required for a {kind} source")
    if kind == "file":
        cfg = SourceConfig(type=kind, claimed_min_entropy=h, path=f.text("path"),
                           bits_per_sample=f.integer("bits_per_sample", 8, lo=1, hi=8),
                           packed=f.flag("packed", False), loop=f.flag("loop", False),
                           stream=f.flag("stream", False),
                           read_timeout=f.number("read_timeout", 5.0, lo=0.01, hi=3600))
    elif kind == "device":
        cfg = SourceConfig(type=kind, claimed_min_entropy=h, path=f.text("path", "/dev/hwrng"),
                           quantum=f.flag("quantum", False),
                           read_timeout=f.number("read_timeout", 5.0, lo=0.01, hi=3600))
    else:
        emulator = f.text("emulator", "")
        vid, pid = (0x1209, 0x0001) if emulator else (None, None)  # the emulator's pid.codes test IDs
        cfg = SourceConfig(type=kind, claimed_min_entropy=h,
                           vendor_id=f.integer("vendor_id", vid, lo=0, hi=0xFFFF) if vid else
                           f.integer("vendor_id", lo=0, hi=0xFFFF),
                           product_id=f.integer("product_id", pid, lo=0, hi=0xFFFF) if pid else
                           f.integer("product_id", lo=0, hi=0xFFFF),
                           endpoint=f.integer("endpoint", None, lo=1, hi=0xFF), serial=f.text("serial", None),
                           bits_per_sample=f.integer("bits_per_sample", 8, lo=1, hi=8),
                           quantum=f.flag("quantum", not emulator), interface=f.integer("interface", 0, lo=0, hi=31),
                           raw=f.flag("raw", False), detach_kernel_driver=f.flag("detach_kernel_driver", False),
                           read_timeout=f.number("read_timeout", 2.0, lo=0.01, hi=3600), emulator=emulator)
        if emulator and cfg.quantum:
            raise ConfigError(f.p("quantum"), "the USB EMULATOR is a software model: it is never quantum")
    f.done()
    return cfg


def parse_config(data: Any, origin: str = "<string>") -> EntropyConfig:
    """Validate a parsed YAML document fully; raise ConfigError naming the first bad field."""
    root = Fields(data if data is not None else {}, "")
    version = root.integer("version", 1)
    if version != 1:
        raise ConfigError("version", f"unsupported version {version}; this release reads version 1")
    src = _source(root.sub("source"))
    if src.emulator:
        base_dir = Path(origin).parent if origin not in ("<string>", "") else Path(".")
        src = replace(src, emulator=str((base_dir / src.emulator).resolve()))
    hf = root.sub("health")
    health = HealthConfig(alpha_log2=hf.number("alpha_log2", -20, lo=-64, hi=-1),
                          startup_samples=hf.integer("startup_samples", 1024, lo=1024),
                          block_samples=hf.integer("block_samples", 65536, lo=1024, hi=1 << 26),
                          allow_reset=hf.flag("allow_reset", True))
    hf.done()
    ef = root.sub("extractor")
    ext = ExtractorConfig(type=ef.text("type", "toeplitz", choices=("toeplitz", "sha256", "von_neumann")),
                          block_bits=ef.integer("block_bits", 1 << 20, lo=1024, hi=1 << 26),
                          eps_log2=ef.number("eps_log2", -100, lo=-256, hi=-32), seed_file=ef.text("seed_file", None))
    ef.done()
    df = root.sub("drbg")
    drbg = DrbgConfig(type=df.text("type", "ctr_aes256", choices=("ctr_aes256", "hmac_sha256")),
                      reseed_interval=df.integer("reseed_interval", 1024, lo=1, hi=1 << 48),
                      prediction_resistance=df.flag("prediction_resistance", False))
    df.done()
    af = root.sub("attestation")
    base = Path(origin).parent if origin not in ("<string>", "") else Path(".")
    cert, key = af.text("certificate", None), af.text("key", None)
    proof = af.text("firmware_proof", None)
    att = AttestationConfig(certificate=(base / cert).resolve() if cert else None,
                            key=(base / key).resolve() if key else None,
                            firmware_proof=(base / proof).resolve() if proof else None)
    af.done()
    sf = root.sub("assessment")
    assess = AssessmentConfig(every_samples=sf.integer("every_samples", None, lo=0),
                              window_samples=sf.integer("window_samples", 1_000_000, lo=10_000, hi=1 << 26),
                              max_shortfall=sf.number("max_shortfall", 0.0, lo=0.0, hi=8.0),
                              min_interval_s=sf.number("min_interval_s", 0.0, lo=0.0, hi=86400.0))
    sf.done()
    if root.has("daemon"):
        raise ConfigError("daemon", "is not read here: the PKCS#11 module in daemon mode is "
                                    "build/libqrng-pkcs11-qrngd.so, configured by qrngd-client.conf "
                                    "(docs/daemon-protocol.md)")
    root.done()
    return EntropyConfig(source=src, health=health, extractor=ext, drbg=drbg, attestation=att, assessment=assess,
                         origin=origin)


def load_config(path: str | Path | None = None) -> EntropyConfig:
    """Load from ``path``, else $QRNG_CONFIG, else /etc/qrng/qrng.yaml, else the built-in default."""
    chosen = path or os.environ.get("QRNG_CONFIG") or (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    if chosen is None:
        return EntropyConfig()
    return parse_file(chosen, lambda data: parse_config(data, str(chosen)))  # type: ignore[no-any-return]


def config_from_text(text: str) -> EntropyConfig:
    return parse_config(load_yaml_text(text), "<string>")
