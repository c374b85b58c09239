"""All-or-nothing file writes: a temporary file in the same folder, fsync, then link or rename into place, then
fsync the folder (the new name survives a power cut, not only the bytes). Every file the product replaces as a
whole goes through :func:`atomic_write`: the files a user names, the ceremony's papers, the witness's state, the
published tiles' checkpoint and state, the daemon's ring description. (The append-only audit log and the
ceremony's staged outputs have their own writers: appends, and staging with quarantine.)"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TMP_MARK", "atomic_write", "fsync_folder", "sweep_stale_temporaries"]

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


def atomic_write(path: Path, data: bytes | Iterable[bytes], overwrite: bool = False, durable: bool = True) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: all or nothing. ``data`` may be an
    iterable of chunks (written as they come: memory stays bounded); if it raises, nothing appears.

    Only a regular file is ever replaced (never a device node, FIFO, socket, folder or symlink), and only with
    ``overwrite``. Temporaries carry the writer's pid, so one left by a killed run is removed by the next.

    ``durable=False`` skips both fsyncs (still all or nothing for readers): for files derived from a durable
    source and written by the thousand (published tiles, rebuilt from the fsync'd log if a power cut loses them)."""
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
            if durable:
                os.fsync(f.fileno())
        if overwrite:
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise FileExistsError(f"{path} exists and is not a regular file; refusing to replace it")
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if exc.filename is None:  # a write or fsync error names no file: say which (the file is as it was)
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    """Make a rename or link inside ``folder`` durable (POSIX: the folder's entry is data of the folder)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
