"""Loopback helpers for starting servers (static tile servers, witnesses, metrics) and knowing they serve: a free
port to give them, and a wait until their port accepts connections. Used by the tests, the benchmarks and `make
demo`'s tile server (from the checkout's root); no server of the product needs them, so they are not shipped."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

__all__ = ["free_port", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the caller's server binds it next; another could take it in between)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, alive: Callable[[], bool] | None = None,
                  host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts a connection; TimeoutError after ``timeout`` seconds, or as soon as
    ``alive()`` says the server process is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or (alive is not None and not alive()):
                raise TimeoutError(f"nothing accepts connections on {host}:{port}") from None
            time.sleep(0.05)
