"""Run a command and, when a line of its standard error (progress) contains ``--at``, stop it, make a folder fail
for real, and let it go on; inside a private mount namespace (``unshare -m``; nothing outside it sees the mounts):

* ``full``: the folder is a tmpfs (a copy of its contents), filled to the last byte at the trigger; afterwards the
  filler is removed (the operator freeing space) and the contents are copied back to the real folder;
* ``readonly``: at the trigger a read-only bind mount of the folder is stacked onto it: every file opened from
  then on is on a read-only file system (EROFS); a file already open for writing (the audit log) keeps writing,
  as the kernel does not remount a file system read-only under open writers without an error to force it;
* ``gone``: the folder's contents are moved away at the trigger and brought back after the command ended (a
  token directory that vanishes: SoftHSM2's token, as if its storage were unplugged).

Prints one JSON line: the command's exit code, its standard output and error. Used by test_gameday_ceremony.py:
a real full or read-only file system and a vanishing token directory, not a fake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _fill(folder: Path) -> None:
    """Every page of the tmpfs taken: big writes first, then byte by byte (unbuffered: nothing left to flush)."""
    for name, size in ((".filler", 1 << 16), (".filler-small", 1)):
        with contextlib.suppress(OSError), open(folder / name, "wb", buffering=0) as f:
            while f.write(b"\0" * size):
                pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--fault", choices=("full", "readonly", "gone"), required=True)
    ap.add_argument("--at", required=True, help="inject when a progress line (stderr) contains this")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    folder = a.folder.resolve()
    stage = Path(tempfile.mkdtemp(prefix="fault-ns-"))
    if a.fault == "full":
        shutil.copytree(folder, stage / "copy", symlinks=True)
        _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder))
        shutil.copytree(stage / "copy", folder, symlinks=True, dirs_exist_ok=True)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    err, injected = [], False
    for line in p.stderr:  # the progress lines
        err.append(line)
        if not injected and a.at in line:
            injected = True
            p.send_signal(signal.SIGSTOP)  # the fault is in place before the command's next write
            if a.fault == "full":
                _fill(folder)
            elif a.fault == "readonly":
                _mount("--bind", str(folder), str(folder))
                _mount("-o", "remount,bind,ro", str(folder))
            else:
                (stage / "away").mkdir()
                for child in folder.iterdir():
                    shutil.move(str(child), stage / "away" / child.name)
            p.send_signal(signal.SIGCONT)
    out = p.stdout.read() if p.stdout else ""
    rc = p.wait()
    if a.fault == "full":
        for name in (".filler", ".filler-small"):
            (folder / name).unlink(missing_ok=True)
        shutil.copytree(folder, stage / "after", symlinks=True)
        subprocess.run(["umount", str(folder)], check=True)
        shutil.rmtree(folder)
        shutil.copytree(stage / "after", folder, symlinks=True)
    elif a.fault == "readonly" and injected:
        subprocess.run(["umount", str(folder)], check=True)
    elif injected:
        for child in (stage / "away").iterdir():
            shutil.move(str(child), folder / child.name)
    shutil.rmtree(stage)
    print(json.dumps({"rc": rc, "stdout": out, "stderr": "".join(err), "injected": injected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
