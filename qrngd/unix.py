"""qrngd's Unix socket transport: one selector loop serving every local client, and socket activation
(sd_listen_fds(3)). Requests are answered by :func:`qrngd.state.respond`; the hostile-client rules
(fair turns, bounded buffers, per-user connection limits, shedding at the descriptor limit) live here.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import protocol as P
from .state import Daemon, Session, respond

__all__ = ["IDLE_S", "SocketSpec", "UnixLoop", "activated_socket", "admit", "serve"]

IDLE_S = 300.0  # a client connection silent this long is closed (a stuck or hostile client holds no thread)


@dataclass(frozen=True)
class SocketSpec:
    path: Path
    mode: int = 0o660
    gid: int = -1  # the socket's group (-1: the daemon's)


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "session", "last", "closing", "partial_since", "uid", "reading")

    def __init__(self, sock: socket.socket, uid: int = -1) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.session = Session()
        self.last = time.monotonic()
        self.closing = False
        self.partial_since: float | None = None  # when an incomplete frame started waiting for its rest
        self.uid = uid
        self.reading = True


OUT_MAX = P.HEADER.size + P.MAX_PAYLOAD   # answers queued for one connection before it is read from again
IN_MAX = 2 * (P.HEADER.size + P.MAX_PAYLOAD)  # bytes buffered from one connection


def admit(per_uid: dict[int, int], total: int, uid: int, privileged: bool, max_conns: int, per_user: int,
          reserved: int) -> str | None:
    """Whether a new connection from ``uid`` is kept (None) or why not. Pure. Each user holds at most
    ``per_user`` connections; the last ``reserved`` slots are kept for root and the daemon's own user and group
    (``privileged``), so an unprivileged user's idle connections can never hold every slot (issue 20)."""
    if total >= max_conns:
        return "every connection slot is taken"
    if per_uid.get(uid, 0) >= per_user:
        return f"user {uid} holds {per_user} connections, the most one user may"
    if total >= max_conns - reserved and not privileged:
        return "the remaining slots are reserved for root and the daemon's group"
    return None


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(uid, gid) of a Unix socket's peer (SO_PEERCRED), or (-1, -1)."""
    import struct
    try:
        _, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except (OSError, AttributeError):
        return -1, -1
    return uid, gid


class UnixLoop:
    """The Unix socket's server: one thread, one selector, every client connection non-blocking. No thread per
    client, so many clients never contend for the interpreter lock (the daemon's own time per request stays
    tens of microseconds with 16 client processes; bench/bench_daemon.py). A request whose source pool is empty
    waits for it (at most seed_wait_s) and the others wait behind it: they draw on the same sources anyway.

    Against hostile clients (issue 20): connections are served fairly, one request each per turn, so pipelined
    requests from one client cannot starve the others; a connection whose unsent answers exceed OUT_MAX is not
    read from until they drain; an incomplete frame must be completed within frame_s; each user (SO_PEERCRED)
    holds at most per_user connections and the last ``reserved`` slots are for root and the daemon's user and
    group; at the descriptor limit a connection is accepted and closed at once (shed) instead of the listening
    socket staying readable and the loop spinning. Malformed headers get BAD_REQUEST and the connection is closed;
    a connection silent for idle_s is closed."""

    idle_s = IDLE_S
    frame_s = 2.0
    max_conns = 1024
    per_user = 64
    reserved = 16

    def __init__(self, sock: socket.socket, daemon: Daemon, activated: bool) -> None:
        self.socket, self.daemon, self.activated = sock, daemon, activated
        self.socket.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.socket, selectors.EVENT_READ, None)
        self.conns: dict[int, _Conn] = {}
        self.per_uid: dict[int, int] = {}
        self.ready: deque[_Conn] = deque()  # connections holding a complete request not yet answered
        self.shed = 0
        self._spare: int | None = os.open(os.devnull, os.O_RDONLY)  # given up to accept-and-close at EMFILE
        self._stop = False
        self._gid = os.getgid()
        self.per_user = daemon.options.max_conns_per_user

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        last_sweep = time.monotonic()
        while not self._stop:
            for key, events in self.sel.select(0 if self.ready else poll_interval):
                if key.data is None:
                    self._accept()
                else:
                    conn: _Conn = key.data
                    if events & selectors.EVENT_READ:
                        self._read(conn)
                    if events & selectors.EVENT_WRITE and not conn.closing:
                        self._flush(conn)
            self._serve_ready()
            now = time.monotonic()
            if now - last_sweep >= poll_interval:
                last_sweep = now
                self.daemon.sample_history()
                for conn in [c for c in self.conns.values() if now - c.last > self.idle_s or
                             (c.partial_since is not None and now - c.partial_since > self.frame_s)]:
                    self._close(conn)

    def _privileged(self, uid: int, gid: int) -> bool:
        return uid in (0, os.getuid()) or gid == self._gid

    def _accept(self) -> None:
        import errno
        for _ in range(64):
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._shed_one()
                return
            uid, gid = _peer(sock)
            why = admit(self.per_uid, len(self.conns), uid, self._privileged(uid, gid), self.max_conns,
                        self.per_user, self.reserved)
            if why is not None:
                self.shed += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, uid)
            conn.session = Session(peer=f"uid {uid}", privileged=self._privileged(uid, gid))
            self.conns[sock.fileno()] = conn
            self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _shed_one(self) -> None:
        """At the descriptor limit: give up the spare descriptor, accept the waiting connection and close it, take
        the spare back. The client sees its connection closed; the loop does not spin on a readable socket."""
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        with contextlib.suppress(OSError):
            sock, _ = self.socket.accept()
            sock.close()
            self.shed += 1
        with contextlib.suppress(OSError):
            self._spare = os.open(os.devnull, os.O_RDONLY)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        conn.inbuf += data
        self._answer_one(conn)
        self._flush(conn)

    def _answer_one(self, conn: _Conn) -> None:
        """Answer at most one complete request of ``conn``; if another is complete, it waits for the next turn."""
        if conn.closing or len(conn.outbuf) > OUT_MAX:
            return
        if len(conn.inbuf) < P.HEADER.size:
            conn.partial_since = (conn.partial_since or time.monotonic()) if conn.inbuf else None
            return
        try:
            version, op, length = P.decode_header(bytes(conn.inbuf[:P.HEADER.size]))
        except P.ProtocolError as exc:
            conn.outbuf += P.encode_response(P.STATUS.BAD_REQUEST, str(exc).encode())
            conn.closing = True  # the stream is out of step: answer, then close
            return
        if len(conn.inbuf) < P.HEADER.size + length:
            conn.partial_since = conn.partial_since or time.monotonic()
            return
        payload = bytes(conn.inbuf[P.HEADER.size:P.HEADER.size + length])
        del conn.inbuf[:P.HEADER.size + length]
        conn.partial_since = None
        conn.outbuf += respond(self.daemon, conn.session, version, op, payload)
        if self._complete(conn):
            self.ready.append(conn)
        elif conn.inbuf:
            conn.partial_since = time.monotonic()

    @staticmethod
    def _complete(conn: _Conn) -> bool:
        if len(conn.inbuf) < P.HEADER.size:
            return False
        try:
            _, _, length = P.decode_header(bytes(conn.inbuf[:P.HEADER.size]))
        except P.ProtocolError:
            return True  # answered BAD_REQUEST (and closed) on its turn
        return len(conn.inbuf) >= P.HEADER.size + length

    def _serve_ready(self) -> None:
        """One turn: each connection with a complete request waiting gets one answer (round robin)."""
        for _ in range(len(self.ready)):
            conn = self.ready.popleft()
            if conn.sock.fileno() < 0 or conn.sock.fileno() not in self.conns:
                continue
            if len(conn.outbuf) > OUT_MAX:
                continue  # its answers are not read yet: it waits (requeued by _flush once they drain)
            self._answer_one(conn)
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbuf:
                n = conn.sock.send(conn.outbuf)
                del conn.outbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)
            return
        if conn.closing and not conn.outbuf:
            self._close(conn)
            return
        if len(conn.outbuf) <= OUT_MAX and self._complete(conn) and conn not in self.ready:
            self.ready.append(conn)  # drained: its waiting requests get their turns again (never a busy loop)
        # read again only when its answers have drained and its buffered input is bounded
        reading = len(conn.outbuf) <= OUT_MAX and len(conn.inbuf) <= IN_MAX
        want = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if want == 0:
            want = selectors.EVENT_WRITE
        if self.sel.get_key(conn.sock).events != want:
            self.sel.modify(conn.sock, want, conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self.conns.pop(fd, None) is None:
            return
        left = self.per_uid.get(conn.uid, 1) - 1
        if left > 0:
            self.per_uid[conn.uid] = left
        else:
            self.per_uid.pop(conn.uid, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def describe(self) -> str:
        """Where and how this loop listens, as the kernel says: the socket's path and real permission bits (under
        socket activation they are the unit's, not qrngd's configuration)."""
        import stat
        where = self.socket.getsockname()
        where = where.decode() if isinstance(where, bytes) else str(where)
        try:
            mode = f"mode {stat.S_IMODE(os.stat(where).st_mode):o}"
        except OSError:
            mode = "mode unknown"
        return f"{where} ({mode}{', socket from systemd' if self.activated else ''})"

    def shutdown(self) -> None:
        self._stop = True

    def server_close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.socket)
        self.sel.close()
        self.socket.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (socket activation, sd_listen_fds(3): LISTEN_PID is ours and
    LISTEN_FDS >= 1, the first descriptor is 3), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0") or 0) < 1:
        return None
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError("the socket systemd passed is not a Unix stream socket (see contrib/systemd/qrngd.socket)")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return sock


def serve(daemon: Daemon, spec: SocketSpec, ready: Callable[[UnixLoop], None] | None = None) -> UnixLoop:
    """Bind the socket (a stale socket file of a dead daemon is replaced; a live one is refused), set its
    mode and group, and return the server (call serve_forever). Under systemd socket activation the passed
    socket is used as it is (its path, mode and group are the unit's)."""
    passed = activated_socket()
    if passed is not None:
        loop = UnixLoop(passed, daemon, activated=True)
        if ready is not None:
            ready(loop)
        return loop
    path = spec.path
    gid = spec.gid
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            uid, _ = _peer(probe)
            if uid not in (0, os.geteuid()):
                raise OSError(f"{path}: a process of uid {uid} answers on this socket (squatted in a shared "
                              "folder?); refusing to start (put the socket in a folder only qrngd may write to)")
            raise OSError(f"{path}: another qrngd is serving on this socket")
        except (ConnectionRefusedError, FileNotFoundError):
            if not path.is_socket():
                raise OSError(f"{path} exists and is not a socket; refusing to replace it") from None
            path.unlink()
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, spec.mode)
        if gid >= 0:
            os.chown(path, -1, gid)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    loop = UnixLoop(sock, daemon, activated=False)
    if ready is not None:
        ready(loop)
    return loop
