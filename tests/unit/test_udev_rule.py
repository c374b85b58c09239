"""The udev rule for USB QRNGs (issue 20, medium), read as data: every rule gives the device to the daemon's group
only (no uaccess, no world access), and the protocol-device rule matches on the usb_device event through the
ID_USB_INTERFACES list of its interfaces' class:subclass:protocol (interface classes are not attributes of the USB
device, and ATTRS{} searches only parents, so the old rule never matched). Not yet run through `udevadm test`."""

from __future__ import annotations

import re
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "contrib" / "udev" / "60-qrng-ceremony.rules"


def _rules() -> list[dict[str, str]]:
    out = []
    for line in RULES.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append({m.group(1): m.group(3) for m in re.finditer(r'([A-Z_]+(\{[^}]*\})?)[+!=]?=+"([^"]*)"', line)}
                   | {"_line": line})
    return out


def test_each_rule_gives_the_device_to_the_daemons_group_only():
    rules = _rules()
    assert len(rules) == 3
    for r in rules:
        assert r.get("GROUP") == "qrng" and r.get("MODE") == "0660", r["_line"]
        assert "uaccess" not in r["_line"] and "plugdev" not in r["_line"]
        assert r.get("ENV{DEVTYPE}") == "usb_device" and r.get("SUBSYSTEM") == "usb"


def test_protocol_devices_are_matched_by_their_interfaces_on_the_device_event():
    proto = next(r for r in _rules() if "ID_USB_INTERFACES" in r["_line"])
    assert proto["IMPORT{builtin}"] == "usb_id" and proto["ENV{ID_USB_INTERFACES}"] == "*:ff5101:*"
    assert not any(k.startswith("ATTRS{bInterface") for k in proto)  # never matched on a usb_device event


def test_the_service_runs_in_the_group_the_rule_names():
    unit = (RULES.parents[1] / "systemd" / "qrngd.service").read_text()
    assert "SupplementaryGroups=qrng" in unit
