"""The USB EMULATOR's TEST-ONLY firmware transparency log (``qrng usb-emulator init --firmware-log``): a small
log holding the emulator's firmware manifests, signed and cosigned by keys made here, so that firmware
transparency can be exercised end to end without a manufacturer's log. Never a real manufacturer's log."""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_firmware_log"]


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
    paths["log_key"].write_text(log_pub + "\n")
    paths["witness_key"].write_text(str(w.verifier) + "\n")
    paths["checkpoint"].write_text(note)
    for i in range(len(manifests)):
        p = folder / f"entry-{i}.tlog-proof"
        p.write_text(format_proof(i, tree.inclusion_proof(i, len(manifests)), note))
        paths[f"proof_{i}"] = p
    return paths
