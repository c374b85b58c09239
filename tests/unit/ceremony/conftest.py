"""A ceremony workspace built in-process from data: copies of the example scripts and policies, a TEST-ONLY
attestation CA and witness keys made by the library, a profile whose module is a placeholder file (the plan only
checks that it exists; the HSM is the in-memory FakeHsm). No SoftHSM2, no subprocess, no native kernels."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qrng.attestation.statement import init_simulator
from transparency.note import ALG_COSIGNATURE_V1, generate_ed25519, load_ed25519_signer

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class PlanWorkspace:
    dir: Path

    def script(self, name: str) -> Path:
        return self.dir / "ceremonies" / name

    def derive(self, source: str, target: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """A new file in ceremonies/ made from ``source`` as data: loaded, changed by ``change``, dumped."""
        doc = yaml.safe_load(self.script(source).read_text())
        change(doc)
        self.script(target).write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.script(target)


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a YAML document, change it as data, write it back."""
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def write_workspace_files(d: Path, module: str, token_label: str, env: dict[str, str] | None = None) -> None:
    """Copies of the example scripts and policies under ``d``, changed as data to point at this workspace's
    attestation CA (``d/att``), witness keys (``d/w``), log key and PIN file; three profiles on ``module``."""
    shutil.copytree(ROOT / "ceremonies", d / "ceremonies")
    shutil.copytree(ROOT / "policies", d / "policies")
    from qrng.sources.usbemu_init import init_emulator
    init_emulator(d / "usb" / "EMU-0001", d / "att", firmware_log=d / "usb" / "fwlog")  # the USB EMULATOR

    def attestation(doc: dict[str, Any]) -> None:
        att = doc.setdefault("attestation", {})
        att["manufacturer_roots"] = ["../att/test-manufacturer-ca.pem"]
        log = att.get("firmware", {}).get("transparency_log")
        if log:
            log.update(key="../usb/fwlog/log.pub", witnesses=["../usb/fwlog/witness.pub"])
    for pol in (d / "policies").glob("*.yaml"):
        edit_yaml(pol, attestation)
    edit_yaml(d / "ceremonies" / "entropy-usb-emulator.yaml", lambda doc: (
        doc["source"].update(emulator="../usb/EMU-0001"),
        doc["attestation"].update(firmware_proof="../usb/EMU-0001/firmware.tlog-proof")))
    edit_yaml(d / "ceremonies" / "entropy-simulator.yaml", lambda doc: doc.update(
        attestation={"certificate": "../att/device-SIM-0001.pem", "key": "../att/device-SIM-0001.key"}))
    witness_keys = {"witness.example/carol": "../w/carol.key", "witness.example/dave": "../w/dave.key"}
    base: dict[str, Any] = {"module": module, "token_label": token_label,
                            "pin": {"source": "file", "path": "../pins.env"}, "witness_keys": witness_keys}
    if env:
        base["env"] = env
    profiles = {"rehearsal": {**base, "log_key": {"hsm_label": "audit-log-key"}},
                "filekey": {**base, "log_key": {"file": "../log.key"}},
                "rehearsal-bootstrap": {**base, "log_key": {"file": "../log.key"}}}
    (d / "ceremonies" / "profiles.yaml").write_text(yaml.safe_dump({"version": 1, "profiles": profiles},
                                                                    sort_keys=False))


@pytest.fixture()
def ws(tmp_path: Path) -> PlanWorkspace:
    return make_plan_workspace(tmp_path)


def make_plan_workspace(d: Path) -> PlanWorkspace:
    """The workspace in folder ``d`` (a module-scoped fixture can share one)."""
    init_simulator(d / "att")
    (d / "w").mkdir()
    for w in ("carol", "dave"):
        priv, _ = generate_ed25519(f"witness.example/{w}")
        (d / "w" / f"{w}.key").write_text(priv + "\n")
        (d / "w" / f"{w}.key.pub").write_text(str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier) + "\n")
    priv, _ = generate_ed25519("bootstrap")
    (d / "log.key").write_text(priv + "\n")
    (d / "pins.env").write_text("QRNG_HSM_USER_PIN=0000\n")
    (d / "placeholder-module.so").write_bytes(b"")  # a placeholder path, never loaded
    write_workspace_files(d, str(d / "placeholder-module.so"), "fake")
    return PlanWorkspace(d)
