"""The bounded HTTP server under the witness, the tiles server and qrngd's metrics (issue 20): connections beyond
the cap are answered 503 at once, and an idle connection is dropped after the read timeout, so a local user
cannot hold every thread or descriptor. In-process on loopback, bounded in time."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

from qrng.httpbound import BoundedHTTPServer


class Small(BoundedHTTPServer):
    max_connections = 3
    read_timeout_s = 0.5


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: object) -> None:
        pass


def test_cap_and_read_timeout():
    srv = Small(("127.0.0.1", 0), Hello)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = srv.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # each holds a slot, silent
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(2)
        assert extra.recv(100).startswith(b"HTTP/1.1 503")
        assert srv.refused >= 1
        for s in idle:  # dropped by the read timeout, not held for ever
            s.settimeout(3)
            assert s.recv(10) == b""
        time.sleep(0.1)
        ok = socket.create_connection(("127.0.0.1", port))
        ok.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        ok.settimeout(2)
        assert ok.recv(100).startswith(b"HTTP/1.1 200")
        for s in [*idle, extra, ok]:
            s.close()
    finally:
        srv.shutdown()
        srv.server_close()
