"""--out: all or nothing, never a non-regular file replaced (issue 10 item 7), stale temporaries of a killed run
removed by the next (item 17)."""

from __future__ import annotations

import os
import socket

import pytest

from qrng_cli.common import TMP_MARK, atomic_write


def test_writes_and_refuses_to_overwrite(tmp_path):
    p = tmp_path / "out.bin"
    atomic_write(p, b"one")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        atomic_write(p, b"two")
    atomic_write(p, b"two", overwrite=True)
    assert p.read_bytes() == b"two"


def test_never_replaces_a_fifo_even_with_force(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match="not a regular file"):
        atomic_write(fifo, b"x", overwrite=True)
    assert fifo.exists() and not fifo.is_file()


def test_never_replaces_a_socket_or_a_folder_or_a_symlink(tmp_path):
    sock_path = tmp_path / "s"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    (tmp_path / "d").mkdir()
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (tmp_path / "link").symlink_to(target)
    try:
        for p in (sock_path, tmp_path / "d", tmp_path / "link"):
            with pytest.raises(FileExistsError, match="not a regular file"):
                atomic_write(p, b"x", overwrite=True)
    finally:
        s.close()
    assert target.read_bytes() == b"keep"


def _dead_pid() -> int:
    pid = 4_000_000  # above the default pid_max: no such process
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1


def test_stale_temporary_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / f".out.bin{TMP_MARK}{_dead_pid()}-abcd"
    stale.write_bytes(b"\0" * 1024)
    live = tmp_path / f".out.bin{TMP_MARK}{os.getpid()}-efgh"  # a writer that is still running: kept
    live.write_bytes(b"\0")
    atomic_write(tmp_path / "out.bin", b"data")
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize(("durable", "synced"), [(True, ["file", "folder"]), (False, [])])
def test_durable_writes_fsync_the_file_and_then_the_folder(tmp_path, monkeypatch, durable, synced):
    """Issue 21: one writer for whole-file replacement; a durable write makes the new name survive a power cut
    (the folder's entry is fsync'd after the rename), a derived file (a tile) skips both fsyncs."""
    import stat

    import qrng.atomic as atomic
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    atomic.atomic_write(tmp_path / "state.json", b"{}", overwrite=True, durable=durable)
    assert seen == synced and (tmp_path / "state.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


def test_a_write_the_file_system_refuses_names_the_file_and_leaves_nothing(tmp_path):
    """Regression (game day, disk full): the error named no file ("[Errno 28] No space left on device") and the
    ceremony's staging left its temporary behind. A real kernel refusal: RLIMIT_FSIZE in a child process."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "out.pem"
    target.write_bytes(b"old")
    child = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from qrng.atomic import atomic_write
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        try:
            atomic_write(Path({str(target)!r}), b"x" * 5000, overwrite=True)
        except OSError as exc:
            print(exc.filename)
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == str(target), r.stdout + r.stderr
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pem"]
