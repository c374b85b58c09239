"""The Debian packages (issue 23, section 1), as an operator meets them: built by `make deb` (dpkg-buildpackage,
debhelper, lintian clean), installed with apt into a clean Debian 12 root made by mmdebstrap from Debian's package
registry (scripts/deb_test_root.sh, cached once per machine), the daemon started there on the SIMULATOR, bytes
drawn through the installed module by pkcs11-tool and by `openssl rand` through pkcs11-provider, p11-kit listing
the module; then both purged, and nothing of theirs left. Root only (chroot)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libqrng-pkcs11-qrngd.so"
# what may change outside a package's own files and still mean it left nothing: dpkg's and apt's records, logs,
# root's home (what the commands run as root cache there), the shadow tools' backups of /etc/group and friends
IGNORED = ("./proc", "./sys", "./dev", "./tmp", "./run", "./var/lib/dpkg", "./var/lib/apt", "./var/cache",
           "./var/log", "./etc/ld.so.cache", "./root", "./etc/group-", "./etc/gshadow-", "./etc/passwd-",
           "./etc/shadow-")

pytestmark = [pytest.mark.deb,  # `make deb-test`; not in `make test` (its 15-minute budget)
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mmdebstrap"),
                                 reason="needs root and mmdebstrap (make provision)")]


@pytest.fixture(scope="module")
def debs() -> list[Path]:
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_deb.sh")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]  # a build failure or a lintian error/warning
    found = sorted((ROOT / "dist" / "deb").glob("*.deb"))
    assert [p.name.split("_")[0] for p in found] == ["qrng-pkcs11-qrngd", "qrngd"], found
    return found


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    tar = subprocess.run(["bash", str(ROOT / "scripts" / "deb_test_root.sh")], capture_output=True, text=True,
                         timeout=1200, check=True).stdout.strip()
    d = tmp_path / "root"
    d.mkdir()
    with tarfile.open(tar) as t:
        t.extractall(d, filter="fully_trusted")  # our own root, device nodes included
    shutil.copy("/etc/resolv.conf", d / "etc" / "resolv.conf")
    return d


def inside(root: Path, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "HOME": "/root"}
    return subprocess.run(["/usr/sbin/chroot", str(root), "/bin/sh", "-ec", script], capture_output=True, text=True,
                          env=env, timeout=timeout)


def files(root: Path) -> set[str]:
    r = inside(root, "cd / && find . -xdev -path ./proc -prune -o -print")
    return {p for p in r.stdout.splitlines() if not p.startswith(IGNORED)}


def test_install_serve_and_purge_in_a_clean_debian_root(debs: list[Path], root: Path) -> None:
    (root / "tmp" / "debs").mkdir(parents=True)
    for p in debs:
        shutil.copy(p, root / "tmp" / "debs" / p.name)
    before = files(root)
    r = inside(root, "apt-get install -y -q /tmp/debs/*.deb")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert list((root / "usr/lib/qrngd/python/qrng").glob("__pycache__/*.pyc"))  # byte-compiled by postinst
    assert inside(root, "getent group qrng").returncode == 0  # made by qrngd's postinst
    for conffile in ("/etc/qrng/qrngd.yaml", "/etc/qrng/qrngd-client.conf"):
        assert (root / conffile.lstrip("/")).is_file(), conffile
    unit = (root / "lib/systemd/system/qrngd.service").read_text()
    assert "ExecStart=/usr/bin/qrng daemon --config-file /etc/qrng/qrngd.yaml" in unit
    assert (root / "lib/systemd/system/qrngd.socket").is_file()
    assert any((root / d / "60-qrng-ceremony.rules").is_file() for d in ("lib/udev/rules.d", "usr/lib/udev/rules.d"))

    (root / "run" / "qrngd").mkdir(exist_ok=True)  # under systemd, qrngd.socket makes it
    (root / "tmp" / "sim.yaml").write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    daemon = subprocess.Popen(["/usr/sbin/chroot", str(root), "/usr/bin/qrng", "daemon", "--config", "/tmp/sim.yaml",
                               "--socket", "/run/qrngd/qrngd.sock"], stderr=subprocess.DEVNULL,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    try:
        for _ in range(300):
            if inside(root, "qrng status >/dev/null 2>&1").returncode == 0:
                break
            time.sleep(0.1)
        b = inside(root, "qrng bytes 16 --hex --config /tmp/sim.yaml")  # the command and its bundled packages
        assert b.returncode == 0 and len(b.stdout.strip()) == 32, b.stderr[-2000:]
        tool = inside(root, f"pkcs11-tool --module {MODULE} --generate-random 16 | wc -c")
        assert tool.returncode == 0 and tool.stdout.strip() == "16", tool.stderr
        listed = inside(root, "p11-kit list-modules")
        assert "qrng-qrngd" in listed.stdout and "qrng-ceremony qrngd client" in listed.stdout, listed
        ossl = inside(root, "qrng openssl-config --qrngd > /tmp/o.cnf && OPENSSL_CONF=/tmp/o.cnf openssl rand -hex 16")
        assert ossl.returncode == 0 and len(ossl.stdout.strip()) == 32, ossl.stderr
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    down = inside(root, "OPENSSL_CONF=/tmp/o.cnf openssl rand -hex 16")  # qrngd gone: fails closed
    assert down.returncode != 0 and not down.stdout.strip()

    r = inside(root, "apt-get purge -y -q qrngd qrng-pkcs11-qrngd")
    assert r.returncode == 0, r.stderr[-3000:]
    (root / "tmp" / "sim.yaml").unlink()
    assert inside(root, "getent group qrng").returncode != 0
    left = files(root) - before
    assert not left, sorted(left)
