"""Making a USB EMULATOR (``qrng usb emulator init``): its state folder (identity, TEST-ONLY key and certificate,
firmware image, control file) that :mod:`qrng.sources.usbemu` then serves from, and with ``--firmware-log`` its
TEST-ONLY firmware transparency log: a small log holding the emulator's firmware manifests, signed and cosigned by
keys made here, so that firmware transparency can be exercised end to end without a manufacturer's log. Never a
real manufacturer's log. Above both the emulator and device attestation (it uses both); the emulator itself
imports neither this module nor attestation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_write
from ..lockfile import hold
from . import usbproto as P

__all__ = ["EMULATOR_FIRMWARE", "init_emulator", "make_firmware_log"]


def _put(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """All or nothing (qrng/atomic.py); created 0600, so a private key is never readable by others, then ``mode``."""
    atomic_write(path, data.encode() if isinstance(data, str) else data, overwrite=True)
    path.chmod(mode)


def make_firmware_log(folder: Path, manifests: list[bytes], witness: str = "witness.example/firmware-log",
                      origin: str = "firmware.example/qrng-emulator-log") -> dict[str, Path]:
    """A TEST-ONLY firmware transparency log: the manifests as leaves, a checkpoint signed by the log's key and
    cosigned by one witness, and a .tlog-proof per manifest. Returns the files' paths."""
    import time

    from transparency.merkle import TreeLevels, leaf_hash
    from transparency.note import (
        ALG_COSIGNATURE_V1,
        Checkpoint,
        cosign,
        format_note,
        generate_ed25519,
        load_ed25519_signer,
        parse_note,
        sign_note,
    )
    from transparency.proof import format_proof
    folder.mkdir(parents=True, exist_ok=True)
    log_priv, log_pub = generate_ed25519(origin)
    w_priv, _ = generate_ed25519(witness)
    w = load_ed25519_signer(w_priv, ALG_COSIGNATURE_V1)
    tree = TreeLevels([leaf_hash(m) for m in manifests])
    text = Checkpoint(origin, len(manifests), tree.root()).text()
    note = sign_note(text, [load_ed25519_signer(log_priv)])
    body, sigs = parse_note(note)
    note = format_note(body, [*sigs, cosign(text, w, int(time.time()))])
    paths = {"log_key": folder / "log.pub", "witness_key": folder / "witness.pub", "checkpoint": folder / "checkpoint"}
    _put(paths["log_key"], log_pub + "\n")
    _put(paths["witness_key"], str(w.verifier) + "\n")
    _put(paths["checkpoint"], note)
    for i in range(len(manifests)):
        p = folder / f"entry-{i}.tlog-proof"
        _put(p, format_proof(i, tree.inclusion_proof(i, len(manifests)), note))
        paths[f"proof_{i}"] = p
    return paths


EMULATOR_FIRMWARE = b"qrng-ceremony USB QRNG EMULATOR firmware 1.0.0 - TEST ONLY\n"


def init_emulator(folder: str | Path, attestation_dir: str | Path, serial: str = "EMU-0001",
                  firmware_log: str | Path | None = None, noise_seed: int | None = None) -> dict[str, Path]:
    """Create (once) the state folder of an emulated USB QRNG: identity, TEST-ONLY key and certificate (issued by
    the TEST-ONLY manufacturer CA in ``attestation_dir``), firmware image, counter, control file; and, with
    ``firmware_log``, a TEST-ONLY firmware log holding its firmware with the proof beside the firmware. With
    ``noise_seed``, the device's noise is the same sequence every time it is opened (reproducible measurements such
    as the game day's document); without it, fresh from the operating system's generator. A second init of the
    same folder at the same time is refused (ResourceBusy naming the first): two would mix one's key with the
    other's certificate."""
    d = Path(folder)
    made = {"folder": d, "proof": d / "firmware.tlog-proof"}
    if (d / "device.json").exists():
        return made
    d.mkdir(parents=True, exist_ok=True)
    with hold(d / ".emulator-init.lock", f"the USB EMULATOR folder {d}"):
        if (d / "device.json").exists():  # made by a run that held the lock before this one
            return made
        return _make_emulator(d, Path(attestation_dir), serial, firmware_log, noise_seed)


def _make_emulator(d: Path, attestation_dir: Path, serial: str, firmware_log: str | Path | None,
                   noise_seed: int | None) -> dict[str, Path]:
    from ..attestation.statement import init_simulator, issue_device_certificate
    from ..attestation.usb import firmware_manifest
    init_simulator(attestation_dir)
    _put(d / "firmware.bin", EMULATOR_FIRMWARE)
    model = "QRNG-USB EMULATOR (software device, not quantum)"
    key_pem, chain_pem = issue_device_certificate(attestation_dir, serial, model,
                                                  hashlib.sha256(EMULATOR_FIRMWARE).digest(), simulator=True)
    _put(d / "device.key", key_pem, 0o600)
    _put(d / "chain.pem", chain_pem)
    _put(d / "control", "plugged: yes\nfault: none\ncontrol_fault: none\nphysics_fault: none\n")
    out = {"folder": d}
    if firmware_log is not None:
        info = P.DeviceInfo(8, 8, P.FLAG_EMULATOR, 4.0, hashlib.sha256(EMULATOR_FIRMWARE).digest(), (1, 0, 0),
                            "qrng-ceremony", model, serial)
        other = P.DeviceInfo(8, 8, P.FLAG_EMULATOR, 4.0, hashlib.sha256(b"an older release").digest(), (0, 9, 0),
                             "qrng-ceremony", model, serial)
        paths = make_firmware_log(Path(firmware_log), [firmware_manifest(other), firmware_manifest(info)])
        _put(d / "firmware.tlog-proof", paths["proof_1"].read_text())
        out["proof"] = d / "firmware.tlog-proof"
    # last: device.json is what says the folder is made (a run killed before it makes the folder again)
    meta = {"serial": serial, "model": model, "vendor": "qrng-ceremony", "firmware_version": [1, 0, 0],
            "claimed_min_entropy": 4.0}
    if noise_seed is not None:
        meta["noise_seed"] = noise_seed
    _put(d / "device.json", json.dumps(meta, indent=1) + "\n")
    return out
