"""``qrng witness serve``: a tlog-witness over HTTP (the edge of witness.py).

POST <prefix>/add-checkpoint answers as the spec says; GET <prefix>/<origin hash>/checkpoint serves the latest
cosigned checkpoint of a log (404 before the first). State: one JSON file per origin in the state folder, written
to a temporary file, fsync'd and renamed (and the folder fsync'd) before the cosignature is returned, so a crash
never loses a cosigned size; the folder is locked by one witness process at a time. Threads serve connections; one
lock per origin makes check-and-commit atomic (tlog-witness "the following race")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from qrng.asciinum import is_ascii_decimal
from qrng.atomic import atomic_write
from qrng.httpbound import BoundedHTTPServer

from .merkle import EMPTY_ROOT
from .note import Signer, Verifier
from .witness import add_checkpoint

__all__ = ["FileState", "WitnessServer"]

# signed-note: verifiers "MUST accept at least up to 16 signatures"; post-quantum ones are up to ~5 kB each (6.5 kB
# in base64), so a checkpoint with 16 of them and a 63-line proof is about 110 kB
MAX_BODY = 256 * 1024


class FileState:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _path(self, origin: str) -> Path:
        return self.folder / f"{hashlib.sha256(origin.encode()).hexdigest()}.json"

    def lock(self, origin: str) -> contextlib.AbstractContextManager[None]:
        with self._guard:
            lk = self._locks.setdefault(origin, threading.Lock())
        return _held(lk)

    def latest(self, origin: str) -> tuple[int, bytes]:
        p = self._path(origin)
        if not p.exists():
            return 0, EMPTY_ROOT
        d = json.loads(p.read_text())
        if d.get("origin") != origin:
            raise OSError(f"{p}: state of another origin")
        return int(d["size"]), bytes.fromhex(d["root"])

    def note(self, origin_hash: str) -> str | None:
        p = self.folder / f"{origin_hash}.json"
        if len(origin_hash) != 64 or not all(c in "0123456789abcdef" for c in origin_hash) or not p.exists():
            return None
        note: str = json.loads(p.read_text())["note"]
        return note

    def commit(self, origin: str, size: int, root: bytes, cosigned_note: str) -> None:
        state = {"origin": origin, "size": size, "root": root.hex(), "note": cosigned_note}
        atomic_write(self._path(origin), json.dumps(state).encode(), overwrite=True)  # fsync'd, folder too


@contextlib.contextmanager
def _held(lk: threading.Lock) -> Iterator[None]:
    with lk:
        yield


class WitnessServer(BoundedHTTPServer):
    """At most 64 connections at once, each with a 10 s read timeout (qrng.httpbound)."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], prefix: str, signer: Signer, logs: dict[str, list[Verifier]],
                 state: FileState) -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.signer, self.logs, self.state = signer, logs, state
        self.requests = {"200": 0}
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: WitnessServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks clients and witnesses to support
    # headers and body leave in two writes: without TCP_NODELAY, Nagle holds the body until the client's delayed
    # ACK (40 ms on Linux), capping a keep-alive connection at 25 answers a second (found by bench_witness.py)
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:  # no line per request on stderr
        pass

    def _answer(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        key = str(status)
        self.server.requests[key] = self.server.requests.get(key, 0) + 1

    def do_POST(self) -> None:
        if self.path != f"{self.server.prefix}/add-checkpoint":
            self._answer(404, b"not found\n")
            return
        length = (self.headers.get("Content-Length") or "").strip(" \t")
        n = int(length) if is_ascii_decimal(length) and len(length) < 10 else -1
        if not 0 <= n <= MAX_BODY:
            self._answer(400, f"a Content-Length (ASCII decimal) of at most {MAX_BODY} is required\n".encode())
            self.close_connection = True
            return
        body = self.rfile.read(n)
        try:
            a = add_checkpoint(body, self.server.logs, self.server.state, self.server.signer, int(time.time()))
        except OSError as exc:  # the state could not be made durable: nothing is cosigned
            self._answer(503, f"witness state not written: {exc.strerror or exc}\n".encode())
            return
        except (ValueError, UnicodeError, OverflowError) as exc:  # never a handler that dies without an answer
            self._answer(400, f"malformed request: {type(exc).__name__}\n".encode())
            return
        self._answer(a.status, a.body, a.content_type)

    def do_GET(self) -> None:
        parts = self.path.removeprefix(self.server.prefix).strip("/").split("/")
        note = self.server.state.note(parts[0]) if len(parts) == 2 and parts[1] == "checkpoint" else None
        if note is None:
            self._answer(404, b"not found\n")
            return
        self._answer(200, note.encode())
