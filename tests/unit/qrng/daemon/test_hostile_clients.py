"""qrngd against hostile clients, in-process and without a source (issue 20, high): whatever names clients choose,
the STATUS answer fits the protocol's frame (it is bounded by construction: the largest rows, the rest as
"other"), and nothing a request raises escapes into the serving loop. Regression: 256 clients with 64-character
non-ASCII names made STATUS larger than a frame, the error escaped the selector loop and qrngd exited."""

from __future__ import annotations

import json
import struct

from qrng.daemon import protocol as P
from qrng.daemon.server import STATUS_TABLE_MAX, Daemon, Session, respond


def _daemon() -> Daemon:
    return Daemon([("sim", lambda src: None)], start=False)


def test_status_stays_within_a_frame_whatever_names_clients_choose():
    d = _daemon()
    for i in range(400):
        s = Session()
        name = f"{i:04d}" + "\u00e9" * 30  # 64 bytes, the most HELLO takes; 184 bytes in JSON
        assert respond(d, s, P.VERSION, P.OP.HELLO, name.encode())[:1]
        respond(d, s, P.VERSION, P.OP.FALLBACK, struct.pack("<I", 7))
        d.counters.clients[d.counters.client(s.client, d.counters.clients)] = i
    frame = respond(d, Session(), P.VERSION, P.OP.STATUS, b"")
    assert len(frame) <= P.HEADER.size + P.MAX_PAYLOAD
    doc = json.loads(frame[P.HEADER.size:])
    assert len(doc["clients"]) <= STATUS_TABLE_MAX + 1 and "other" in doc["clients"]
    assert len(doc["client_fallback_seeds"]) <= STATUS_TABLE_MAX + 1
    assert sum(doc["clients"].values()) == sum(d.counters.clients.values())  # summarised, nothing lost


def test_an_error_inside_a_request_is_answered_not_raised(monkeypatch):
    d = _daemon()

    def boom() -> dict:
        raise RuntimeError("injected")
    monkeypatch.setattr(d, "status", boom)
    frame = respond(d, Session(), P.VERSION, P.OP.STATUS, b"")
    assert b"request not served (RuntimeError)" in frame
