"""Whether this machine lets a test make a private mount namespace and mount in it (``unshare -m`` as root): the
game day's real full and read-only file systems (tests/system/ceremony/fault_ns.py, the daemon's audit log)."""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest


@functools.cache
def mount_namespace_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True,
                       timeout=60)
    return r.returncode == 0


needs_mount_namespace = pytest.mark.skipif(not mount_namespace_available(),
                                           reason="needs a private mount namespace (unshare -m and nsenter, root)")
