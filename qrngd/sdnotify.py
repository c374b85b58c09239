"""systemd's readiness protocol (sd_notify(3)): with ``Type=notify`` the unit is started only once qrngd says
READY=1, which it does when every source has been tried once and the socket serves; STATUS= lines show in
``systemctl status qrngd``; STOPPING=1 on the way down. Without $NOTIFY_SOCKET (not under systemd) nothing is
sent. The message is one datagram to the socket systemd names (a path, or "@name" in the abstract namespace)."""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(**fields: str) -> bool:
    """Send ``KEY=value`` lines (``notify(READY="1", STATUS="serving")``); True if a notification socket took them.
    A failure to notify never stops the daemon (systemd then times the start out, which its journal says)."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where or not fields:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "replace")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(address)
        sock.sendall(message)
        return True
    except OSError:
        return False
    finally:
        sock.close()
