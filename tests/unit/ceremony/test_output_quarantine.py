"""The output writer is also the one mover of outputs on resume (issue 21): what only unconfirmed log entries
record goes to the quarantine folder with the log tail; nothing else moves, nothing leaves the folder."""

from __future__ import annotations

import pytest

from ceremony.errors import CeremonyError
from ceremony.outputs import OutputWriter


def test_quarantine_moves_only_unconfirmed_plain_files(tmp_path):
    for name in ("root.pem", "kept.pem", "outside-target"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "link.pem").symlink_to(tmp_path / "outside-target")
    w = OutputWriter(tmp_path)
    moved = w.quarantine(".unconfirmed-7", b"tail\n", ["root.pem", "kept.pem", "link.pem", "../x", "gone.pem",
                                                       "root.pem"], confirmed={"kept.pem"})
    side = tmp_path / ".unconfirmed-7"
    assert moved == ["root.pem"]
    assert (side / "root.pem").read_bytes() == b"root.pem" and not (tmp_path / "root.pem").exists()
    assert (tmp_path / "kept.pem").exists() and (tmp_path / "link.pem").is_symlink()  # confirmed / a link: stay
    assert (side / "audit.log.tail").read_bytes() == b"tail\n"
    assert sorted(p.name for p in side.iterdir()) == ["audit.log.tail", "root.pem"]


@pytest.mark.parametrize("name", ["../escape", ".staging", "unconfirmed-1", ".unconfirmed-1/x", "/tmp/x"])
def test_quarantine_folder_names_are_checked(tmp_path, name):
    with pytest.raises(CeremonyError, match="quarantine folder name"):
        OutputWriter(tmp_path).quarantine(name, b"", [], set())
