"""All-or-nothing file writes: a temporary file in the same folder, fsync, then link or rename into place. Used by
every command that writes a file a user named, and by the ceremony for its papers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TMP_MARK", "atomic_write", "sweep_stale_temporaries"]

TMP_MARK = ".qrng-tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Remove temporaries of ours (``.<name>.qrng-tmp-<pid>-*``) whose writer process is gone (killed mid-write)."""
    removed = []
    for p in folder.glob(f".{name}{TMP_MARK}*"):
        pid_text = p.name[len(f".{name}{TMP_MARK}"):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write(path: Path, data: bytes | Iterable[bytes], overwrite: bool = False) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: all or nothing. ``data`` may be an
    iterable of chunks (written as they come: memory stays bounded); if it raises, nothing appears.

    Only a regular file is ever replaced (never a device node, FIFO, socket, folder or symlink), and only with
    ``overwrite``. Temporaries carry the writer's pid, so one left by a killed run is removed by the next."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FileExistsError(f"{path} exists and is not a regular file; refusing to replace it")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite (--force replaces a regular file)")
    sweep_stale_temporaries(folder, path.name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}{TMP_MARK}{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in ([data] if isinstance(data, bytes | bytearray) else data):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise FileExistsError(f"{path} exists and is not a regular file; refusing to replace it")
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
