"""A qrngd client: seed material and status over the daemon's Unix socket. A daemon that is down, unhealthy or
answers out of protocol raises :class:`DaemonUnavailable` (an EntropyError: callers fail closed)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from typing import Any

from qrng.errors import EntropyError

from . import protocol as P

__all__ = ["DaemonNotRunning", "DaemonClient", "DaemonUnavailable"]


class DaemonUnavailable(EntropyError):
    """The daemon cannot serve now: down, unhealthy (no healthy source), or not speaking the protocol."""


class DaemonNotRunning(DaemonUnavailable):
    """Nothing serves on the Unix socket: no socket file, or a stale one nobody listens on (qrngd stopped or
    crashed). Not an entropy failure of a running daemon: ``qrng status`` exits 5 for it, 3 for an unhealthy one."""


SYSTEMD_HINT = "under systemd: `systemctl status qrngd.socket qrngd`, `journalctl -u qrngd`"


class DaemonClient:
    """A client of qrngd's Unix socket (``path``), or of its mutual-TLS endpoint (``tls``: an SSLContext with the
    client's certificate; ``path`` is then ``HOST:PORT`` and ``server_name`` the name its certificate must have)."""

    def __init__(self, path: str, name: str = "client", timeout: float = 5.0, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None) -> None:
        self.path, self.name, self.timeout = path, name, timeout
        self.tls, self.server_name = tls, server_name
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = {}

    def _open_socket(self) -> socket.socket:
        if self.tls is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError:
                s.close()
                raise
            return s
        host, _, port = self.path.rpartition(":")
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
        try:
            return self.tls.wrap_socket(raw, server_hostname=self.server_name or host.strip("[]"))
        except (OSError, ssl.SSLError):
            raw.close()
            raise

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                s = self._open_socket()
            except ssl.SSLError as exc:
                raise DaemonUnavailable(f"qrngd at {self.path}: TLS handshake failed: {exc.reason or exc}") from None
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if self.tls is not None:
                    raise DaemonUnavailable(f"qrngd at {self.path} is not reachable: {exc.strerror or exc}") from None
                why = "no socket at" if isinstance(exc, FileNotFoundError) else "nothing listens on the socket"
                raise DaemonNotRunning(f"qrngd is not running ({why} {self.path}); {SYSTEMD_HINT}") from None
            except OSError as exc:
                raise DaemonUnavailable(f"qrngd at {self.path} is not reachable: {exc.strerror or exc}") from None
            self._sock = s
            answer = self._call(s, P.OP.HELLO, self.name.encode()[:64])
            try:
                self.hello = answer.json()
            except ValueError:
                self.close()
                raise DaemonUnavailable(f"qrngd at {self.path}: HELLO answer is not JSON") from None
        return self._sock

    def _call(self, s: socket.socket, op: int, payload: bytes) -> P.Response:
        deadline = time.monotonic() + self.timeout  # one deadline per answer: a daemon that drips cannot hold us
        try:
            s.sendall(P.encode_request(op, payload))
            head = self._recv(s, P.HEADER.size, deadline)
            _, status, length = P.decode_header(head)
            body = self._recv(s, length, deadline)
        except (OSError, P.ProtocolError, ValueError) as exc:
            self.close()
            raise DaemonUnavailable(f"qrngd at {self.path}: {exc}") from None
        if status != P.STATUS.OK:
            text = body.decode("utf-8", "replace")
            if status == P.STATUS.UNHEALTHY:
                raise DaemonUnavailable(f"qrngd at {self.path} is unhealthy: {text}")
            raise DaemonUnavailable(f"qrngd at {self.path} refused the request (status {status}): {text}")
        return P.Response(status, body)

    def _recv(self, s: socket.socket, n: int, deadline: float | None = None) -> bytes:
        buf = b""
        while len(buf) < n:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the answer did not arrive within {self.timeout:g} s (a daemon that drips?)")
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("the daemon closed the connection")
            buf += chunk
        return buf

    def request(self, op: int, payload: bytes = b"") -> P.Response:
        """One request; a connection the daemon dropped (it restarted) is opened again once."""
        with self._lock:
            for attempt in (1, 2):
                fresh = self._sock is None
                s = self._connect()
                try:
                    return self._call(s, op, payload)
                except DaemonUnavailable:
                    if fresh or attempt == 2 or self._sock is not None:
                        raise
            raise AssertionError("unreachable")

    def seed(self, n: int) -> bytes:
        """``n`` bytes (1..4096) of health-tested, extracted seed material."""
        if not 1 <= n <= P.MAX_SEED:
            raise ValueError(f"seed length {n}: 1..{P.MAX_SEED}")
        data = self.request(P.OP.SEED, n.to_bytes(4, "little")).payload
        if len(data) != n:
            raise DaemonUnavailable(f"qrngd at {self.path} sent {len(data)} bytes for a {n}-byte seed")
        return data

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.request(P.OP.STATUS).payload)
        return result

    def wait(self, timeout: float, alive: Any = None) -> dict[str, Any]:
        """Poll STATUS until the daemon answers (a daemon that is starting), at most ``timeout`` seconds, or until
        ``alive()`` says the daemon process is gone; then the last DaemonUnavailable is raised."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.status()
            except DaemonUnavailable:
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
