"""The project's HTTP servers (the witness, the tiles server, qrngd's metrics) on Python's ThreadingHTTPServer,
bounded against hostile clients (issue 20): at most ``max_connections`` are handled at once, each in its own
thread (more are answered ``503`` and closed at once, never queued without bound), and every connection has a
read timeout, so idle or dripping clients cannot hold threads or descriptors for ever."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

__all__ = ["BoundedHTTPServer"]

BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    max_connections = 64
    read_timeout_s = 10.0

    def __init__(self, address: tuple[str, int], handler: Any, bind_and_activate: bool = True) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0
        super().__init__(address, handler, bind_and_activate)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        if isinstance(request, socket.socket):
            request.settimeout(self.read_timeout_s)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
