"""The one writer of ceremony outputs: staged (written, fsync'd) under .staging/<step>/, recorded in the log with
their digests by the runner, then linked into place; and, on resume, the one mover of outputs that only
unconfirmed log entries record into a quarantine folder. Never overwrites; never writes outside the folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from qrng.atomic import atomic_write, fsync_folder

from .errors import CeremonyError

__all__ = ["OutputWriter"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OutputWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.staging = self.folder / ".staging"

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved.parent != self.folder and self.folder not in resolved.parents:
            raise CeremonyError(f"refusing to write {path}: outside the ceremony folder {self.folder}")
        return resolved

    def _name(self, name: str) -> str:
        if not name or "/" in name or "\0" in name or name in (".", "..") or name.startswith("."):
            raise CeremonyError(f"refusing output name {name!r}: not a plain file name")
        return name

    def stage(self, step: str, name: str, data: bytes) -> str:
        d = self._inside(self.staging / self._name(step))
        d.mkdir(parents=True, exist_ok=True)
        # whole or nothing, and an error names the file (a full disk left a nameless error and a temporary)
        atomic_write(self._inside(d / self._name(name)), data, overwrite=True)
        return _sha(data)

    def place(self, step: str, outputs: dict[str, str]) -> None:
        for name, digest in outputs.items():
            final = self._inside(self.folder / self._name(name))
            staged = self.staging / step / name
            if final.exists() or final.is_symlink():
                if not final.is_file() or final.is_symlink() or _sha(final.read_bytes()) != digest:
                    raise CeremonyError(f"{final} exists and differs from what step {step} recorded")
                staged.unlink(missing_ok=True)
                continue
            if not staged.exists() or _sha(staged.read_bytes()) != digest:
                raise CeremonyError(f"output {name} of step {step} is missing from {self.staging}")
            os.link(staged, final)  # fails rather than overwrite
            staged.unlink()
        fd = os.open(self.folder, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def quarantine(self, side_name: str, tail: bytes, names: list[str], confirmed: set[str]) -> list[str]:
        """Keep an unconfirmed log tail as evidence in ``<folder>/<side_name>/audit.log.tail`` and move there the
        outputs it names that no confirmed entry records (plain regular files of this folder only; a symlink or a
        name with a path is left where it is). Returns the names moved; everything is fsync'd before it returns."""
        if not side_name.startswith(".unconfirmed-") or "/" in side_name or "\0" in side_name:
            raise CeremonyError(f"refusing quarantine folder name {side_name!r}")
        side = self._inside(self.folder / side_name)
        side.mkdir(exist_ok=True)
        atomic_write(side / "audit.log.tail", tail, overwrite=True)
        moved = []
        for name in names:
            f = self.folder / name
            if name not in confirmed and "/" not in name and name not in moved and f.is_file() and not f.is_symlink():
                os.replace(f, side / name)
                moved.append(name)
        fsync_folder(side)
        fsync_folder(self.folder)
        return moved
