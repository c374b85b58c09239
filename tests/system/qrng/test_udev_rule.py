"""contrib/udev/60-qrng-ceremony.rules through `udevadm test` (Debian's udev) against recorded device trees
(umockdev): a protocol device gets mode 0660 and the daemon's group qrng, without uaccess; a device with another
vendor-specific interface is left alone. Run in a private mount namespace in which the rule directory and
/etc/group are bind-mounted copies: nothing on the machine changes. Regression: the old rule matched
ATTRS{bInterfaceClass} on the usb_device event, where no parent has it, so protocol devices were never matched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RULE = ROOT / "contrib" / "udev" / "60-qrng-ceremony.rules"
DEVICE = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"


def udev_test(tmp_path: Path, tree: str, rule: Path = RULE) -> str:
    for tool in ("udevadm", "umockdev-run", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; `make provision` installs udev and umockdev")
    rules = tmp_path / "rules.d"
    rules.mkdir()
    shutil.copy(rule, rules / RULE.name)
    group = tmp_path / "group"
    group.write_text(Path("/etc/group").read_text() + "qrng:x:987:\n")
    script = (f"mount --bind {rules} /etc/udev/rules.d && mount --bind {group} /etc/group && "
              f"umockdev-run --device {HERE / 'udev' / tree} -- udevadm test --action=add {DEVICE}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout + r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_a_protocol_device_goes_to_the_daemons_group_only(tmp_path):
    out = udev_test(tmp_path, "protocol-device.umockdev")
    assert "ID_USB_INTERFACES=:ff5101:" in out
    assert f"{RULE.name}:12 MODE 0660" in out and f"{RULE.name}:12 GROUP 987" in out, out[-3000:]
    assert "uaccess" not in "".join(ln for ln in out.splitlines() if ln.startswith(("TAGS=", "CURRENT_TAGS=")))


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_another_vendor_specific_device_is_left_alone(tmp_path):
    out = udev_test(tmp_path, "other-vendor-device.umockdev")
    assert "ID_USB_INTERFACES=:ff0001:" in out and RULE.name + ":12 MODE" not in out


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_the_old_rule_never_matched_a_protocol_device(tmp_path):
    """The regression, shown with the old rule itself (from git history)."""
    old = subprocess.run(["git", "-C", str(ROOT), "show", "ad979a8:contrib/udev/60-qrng-ceremony.rules"],
                         capture_output=True, text=True)
    if old.returncode != 0:
        pytest.skip("the old rule is not in this clone's history")
    (tmp_path / "old").mkdir()
    old_rule = tmp_path / "old" / RULE.name
    old_rule.write_text(old.stdout)
    out = udev_test(tmp_path, "protocol-device.umockdev", old_rule)
    assert f"{RULE.name}:8 MODE" not in out and "GROUP 987" not in out
