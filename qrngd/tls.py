"""qrngd beyond one host over mutual TLS (issue 13; docs/daemon-protocol.md "Other hosts").

* :func:`serve_tls`: the daemon's TCP endpoint speaking the same protocol inside TLS (1.2 at least), where the
  client must present a certificate issued by the configured client CA (``CERT_REQUIRED``). Its subject CN names
  the client in the counters (``tls:<CN>/<HELLO name>``), so what each remote host drew is attributable.
* :class:`Upstream`: a qrngd on another host as a source of this daemon (``qrng daemon --upstream HOST:PORT``).
  Its seeds are already health-tested, extracted output of that host's QRNG, so they are served and mixed as
  they are (credited 8 bits per byte while the upstream answers healthy); consumers on this host keep using the
  local Unix socket and the C module, and the TLS key stays in this one daemon, never in every consumer process.

The certificates can be issued by the project's own ceremony tooling: an ``issue_certificate`` step with a
``tls_server`` or ``tls_client`` profile and ``subject_alt_names`` (ceremonies/qrngd-tls.yaml)."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrng.errors import EntropyError
from qrng.sources.base import SourceInfo

from .client import DaemonClient, DaemonUnavailable

if TYPE_CHECKING:
    from .state import Daemon

__all__ = ["TlsOptions", "Upstream", "UpstreamOptions", "client_context", "serve_tls", "server_context"]


@dataclass(frozen=True)
class TlsOptions:
    host: str
    port: int
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class UpstreamOptions:
    address: str          # HOST:PORT
    cert: Path
    key: Path
    ca: Path
    server_name: str | None = None


def server_context(o: TlsOptions) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(o.cert, o.key)
    ctx.load_verify_locations(cafile=str(o.client_ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(ca))
    return ctx


def _common_name(cert: dict[str, Any] | None) -> str:
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return "".join(c if c.isprintable() else "?" for c in str(v))[:48]
    return "unnamed"


class _TlsServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    ctx: ssl.SSLContext
    daemon: Daemon
    idle_s = 300.0

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # the handshake runs in the connection's thread: a slow or hostile client never stalls accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that breaks the handshake or the stream is dropped; it never takes the daemon down


class _TlsHandler(socketserver.BaseRequestHandler):
    """One connection per thread: the TLS handshake (in the connection's thread, with a 10 s limit), then frames
    answered by :func:`qrngd.state.respond` until the client goes, stays silent for ``idle_s``, or sends a
    malformed header (answered BAD_REQUEST, then closed: the stream is out of step)."""

    server: Any

    def _read(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.request.recv(n - len(buf))
            except OSError:  # idle timeout, reset by the client
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self) -> None:
        from . import protocol as P
        from .state import Session, respond
        self.request.settimeout(10.0)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            return
        # the authenticated peer prefixes its HELLO name: what each remote host drew is attributable
        session = Session(f"tls:{_common_name(self.request.getpeercert())}/")
        self.request.settimeout(self.server.idle_s)
        while True:
            head = self._read(P.HEADER.size)
            if head is None:
                return
            try:
                version, op, length = P.decode_header(head)
            except P.ProtocolError as exc:
                self.request.sendall(P.encode_response(P.STATUS.BAD_REQUEST, str(exc).encode()))
                return
            payload = self._read(length)
            if payload is None:
                return
            self.request.sendall(respond(self.server.daemon, session, version, op, payload))


def serve_tls(daemon: Daemon, o: TlsOptions) -> _TlsServer:
    """Start the mutual-TLS endpoint in its own thread; returns the server (``shutdown()`` stops it)."""
    server = _TlsServer((o.host, o.port), _TlsHandler, bind_and_activate=False)
    server.ctx = server_context(o)
    server.daemon = daemon
    if ":" in o.host:
        server.address_family = socket.AF_INET6
        server.socket = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.server_bind()
    server.server_activate()
    threading.Thread(target=server.serve_forever, name="qrngd-tls", daemon=True).start()
    return server


class Upstream:
    """A remote qrngd as this daemon's seed source (:class:`~qrngd.seed_source.SeedSource`) over a
    DaemonClient on mutual TLS."""

    def __init__(self, o: UpstreamOptions, name: str = "qrngd relay") -> None:
        self.options = o
        self.client = DaemonClient(o.address, name, tls=client_context(o.cert, o.key, o.ca),
                                   server_name=o.server_name)
        self._lock = threading.RLock()
        self._failure: EntropyError | None = None
        self._checked = 0.0
        self.received = 0
        self._info = SourceInfo(kind="qrngd", identity=f"qrngd:tls://{o.address}", bits_per_sample=8,
                                claimed_min_entropy=8.0, simulator=False, quantum=False,
                                model=f"qrngd at {o.address} (mutual TLS)", serial=o.address)

    @property
    def info(self) -> SourceInfo:
        return self._info

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> EntropyError | None:
        return self._failure

    latches = False  # an upstream that comes back is used again
    device = None    # nothing to attest here: the upstream attests its own device

    def exclusive(self) -> threading.RLock:
        return self._lock

    def startup(self, qualify: bool = False) -> None:  # the upstream qrngd qualifies its own sources
        with self._lock:
            st = self._call(self.client.status)
            if st.get("state") != "healthy":
                raise self._fail(DaemonUnavailable(f"upstream qrngd is {st.get('state')}: {st.get('error', '')}"))
            sim = bool(self.client.hello.get("simulator"))
            self._info = SourceInfo(kind="qrngd", identity=self._info.identity, bits_per_sample=8,
                                    claimed_min_entropy=8.0, simulator=sim, quantum=False,
                                    model=f"qrngd at {self.options.address} (mutual TLS)", serial=self.options.address)

    def _fail(self, exc: EntropyError) -> EntropyError:
        self._failure = exc
        return exc

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except DaemonUnavailable as exc:
            raise self._fail(exc) from None

    def extracted(self, n: int) -> bytes:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            out = bytearray()
            while len(out) < n:
                chunk = self._call(self.client.seed, min(4096, n - len(out)))
                if len(chunk) >= 16 and not any(chunk):
                    # extracted output of a healthy QRNG is never all zeros: an upstream that sends them is broken or
                    # hostile; its seeds are not served, and the source fails closed (issue 20)
                    raise self._fail(DaemonUnavailable(f"upstream qrngd at {self.options.address} sent "
                                                       f"{len(chunk)} zero bytes as seed material; refused"))
                out += chunk
            self.received += n
            return bytes(out)

    CHECK_S = 0.1

    def check_source(self) -> None:
        """While the pool is full and no seed is fetched, ask the upstream (STATUS) at most every 0.1 s: an upstream
        that is gone or unhealthy fails this source, and its pooled seeds are dropped (fail closed)."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_S:
            return
        self._checked = now
        with self._lock:
            st = self._call(self.client.status)
            if st.get("state") != "healthy":
                raise self._fail(DaemonUnavailable(f"upstream qrngd is {st.get('state')}: {st.get('error', '')}"))

    def report(self) -> dict[str, Any]:
        return {"state": "failed" if self.failed else "healthy", "label": self._info.label,
                "identity": self._info.identity, "simulator": self._info.simulator,
                "claimed_min_entropy": 8.0, "raw_samples": 0, "entropy_credited_bits": self.received * 8.0,
                "extracted_bytes": self.received, "rct_failures": 0, "apt_failures": 0, "estimate": None}

    def close(self) -> None:
        self.client.close()
