"""systemd's readiness protocol (sd_notify(3); issue 22): qrngd's notify() sends one datagram of KEY=value lines to
$NOTIFY_SOCKET, a path or an abstract "@name"; without the variable it sends nothing."""

from __future__ import annotations

import os
import socket

from qrngd.sdnotify import notify


def _listen(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(2)
    return s


def test_ready_and_status_reach_a_path_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    s = _listen(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert notify(READY="1", STATUS="serving on /run/qrngd/qrngd.sock")
    assert s.recv(4096) == b"READY=1\nSTATUS=serving on /run/qrngd/qrngd.sock"
    s.close()


def test_an_abstract_socket_and_no_socket(monkeypatch):
    name = f"qrng-test-notify-{os.getpid()}"
    s = _listen("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert notify(STOPPING="1") and s.recv(4096) == b"STOPPING=1"
    s.close()
    assert not notify(READY="1")  # nobody listens: False, never an exception
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify(READY="1")
