"""``qrng usb``: the USB QRNG EMULATOR's state folders (make one, plug, unplug, inject bus faults) and a
device's protocol answers (identity, status, attestation). The emulator is a software device, never quantum."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from qrng.errors import UsageError

from .common import ExitCode, device_serial

__all__ = ["register"]


def cmd_emulator_init(args: argparse.Namespace) -> int:
    from qrng.sources.usbemu_init import init_emulator
    paths = init_emulator(args.dir, args.attestation_dir, args.serial, args.firmware_log)
    for k, v in paths.items():
        print(f"{k:8} {v}")
    print("EMULATOR ready (TEST-ONLY keys; a software device, not quantum): source: {type: usb, emulator: "
          f"{args.dir}}}")
    return ExitCode.OK


def cmd_emulator_set(args: argparse.Namespace) -> int:
    from qrng.sources.usbemu import read_control, write_control
    changes = {}
    for item in args.changes:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{item!r}: expected KEY=VALUE (plugged=no, fault=stall, ...)")
        changes[key] = value
    folder = Path(args.dir)
    if not (folder / "device.json").exists():
        raise FileNotFoundError(f"{folder} is not an emulator state folder (qrng usb emulator init)")
    write_control(folder, **changes)
    print(" ".join(f"{k}={v}" for k, v in read_control(folder).items()))
    return ExitCode.OK


def _source(args: argparse.Namespace) -> Any:
    from qrng.config import load_config
    from qrng.sources import open_source
    cfg = load_config(args.config)
    if cfg.source.type != "usb":
        raise UsageError(f"{cfg.origin}: source.type is {cfg.source.type!r}, not usb")
    return open_source(cfg.source)


def cmd_info(args: argparse.Namespace) -> int:
    src = _source(args)
    try:
        out: dict[str, Any] = {"identity": src.info.identity, "label": src.info.label, "protocol": src.protocol,
                               "bits_per_sample": src.info.bits_per_sample,
                               "claimed_min_entropy": src.info.claimed_min_entropy, "firmware": src.info.firmware}
        if src.protocol:
            st = src.status()
            out |= {"firmware_sha256": src.firmware_sha256(), "healthy": st.healthy, "status_flags": st.flags,
                    "rct_failures": st.rct_failures, "apt_failures": st.apt_failures, "samples": st.samples}
            if args.attest:
                nonce = os.urandom(32)
                att, _ = src.attest(nonce)
                out |= {"nonce": nonce.hex(), "counter": att.counter, "signature": att.signature.hex()}
    finally:
        src.close()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")
    return ExitCode.OK


def register(sub: Any) -> None:
    ap = sub.add_parser("usb", help="USB QRNG devices and the USB EMULATOR", description=__doc__)
    s = ap.add_subparsers(dest="usb_command", required=True, metavar="ACTION")
    e = s.add_parser("emulator", help="the USB EMULATOR's state folders (a software device, TEST-ONLY keys)")
    es = e.add_subparsers(dest="emulator_command", required=True, metavar="ACTION")
    i = es.add_parser("init", help="make an emulator state folder (identity, TEST-ONLY key and certificate)")
    i.add_argument("--dir", required=True, help="the state folder to create")
    i.add_argument("--attestation-dir", required=True,
                   help="folder of the TEST-ONLY manufacturer CA (made there if missing) that certifies the device")
    i.add_argument("--serial", default="EMU-0001", type=device_serial,
                   help="the emulated device's serial: 1 to 32 of A-Z a-z 0-9 - _ . (default EMU-0001)")
    i.add_argument("--firmware-log", help="also make a TEST-ONLY firmware transparency log in this folder and put "
                                          "the firmware's proof (firmware.tlog-proof) in the state folder")
    i.set_defaults(func=cmd_emulator_init)
    c = es.add_parser("set", help="plug, unplug or inject faults: KEY=VALUE ... (plugged=yes|no, "
                                  "fault=none|stall|timeout|short|zlp|silent|eio, control_fault=none|stall, "
                                  "physics_fault=none|stuck_at|low_entropy, kernel_driver=none|bound, "
                                  "permission=granted|denied)")
    c.add_argument("--dir", required=True, help="the emulator's state folder")
    c.add_argument("changes", nargs="+", metavar="KEY=VALUE", help="control settings to change")
    c.set_defaults(func=cmd_emulator_set)
    n = s.add_parser("info", help="a configured USB device's identity, status and (with --attest) a fresh "
                                  "attestation counter and signature")
    n.add_argument("--config", help="entropy-core YAML with source.type usb (default: $QRNG_CONFIG)")
    n.add_argument("--attest", action="store_true", help="also ask for an attestation over a fresh nonce")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(func=cmd_info)
