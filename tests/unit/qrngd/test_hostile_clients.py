"""qrngd against hostile clients, in-process and without a source (issue 20, high): whatever names clients choose,
the STATUS answer fits the protocol's frame (it is bounded by construction: the largest rows, the rest as
"other"), and nothing a request raises escapes into the serving loop. Regression: 256 clients with 64-character
non-ASCII names made STATUS larger than a frame, the error escaped the selector loop and qrngd exited."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from qrngd import protocol as P
from qrngd.state import STATUS_TABLE_MAX, Daemon, Session, respond


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
    frame = respond(d, Session(privileged=True), P.VERSION, P.OP.STATUS, b"")
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


@pytest.mark.parametrize("per_uid, total, uid, privileged, kept", [
    ({}, 0, 1000, False, True),
    ({1000: 64}, 64, 1000, False, False),       # the user's share is used up
    ({1000: 10}, 1008, 1001, False, False),      # the last 16 slots are reserved ...
    ({1000: 10}, 1008, 0, True, True),           # ... for root and the daemon's group
    ({}, 1024, 0, True, False),                  # every slot taken
])
def test_admission(per_uid, total, uid, privileged, kept):
    from qrngd.unix import admit
    assert (admit(per_uid, total, uid, privileged, 1024, 64, 16) is None) == kept


def test_fallback_reports_are_bound_to_the_peer_and_rate_limited():
    """Issue 20: FALLBACK reports carried only the name the client chose (HELLO), so any local user could flood
    the signed log and raise alerts under another client's name. They are recorded with the peer the kernel
    vouches for, and limited per peer."""
    from qrngd.state import FALLBACK_PER_MINUTE
    d = _daemon()
    s = Session(peer="uid 1234")
    respond(d, s, P.VERSION, P.OP.HELLO, b"pkcs11:openssl")
    answers = [respond(d, s, P.VERSION, P.OP.FALLBACK, struct.pack("<I", 1)) for _ in range(FALLBACK_PER_MINUTE + 5)]
    assert sum(a[P.HEADER.size - 5] == P.STATUS.OK for a in answers) == FALLBACK_PER_MINUTE
    assert d.counters.fallback_seeds == {"pkcs11:openssl (uid 1234)": FALLBACK_PER_MINUTE}
    other = Session(peer="uid 99")
    respond(d, other, P.VERSION, P.OP.HELLO, b"pkcs11:openssl")  # the same chosen name, another user
    assert respond(d, other, P.VERSION, P.OP.FALLBACK, struct.pack("<I", 1))[P.HEADER.size - 5] == P.STATUS.OK
    assert d.counters.fallback_seeds["pkcs11:openssl (uid 99)"] == 1


@pytest.mark.parametrize("owner, mode", [(65534, 0o600), (None, 0o622)])
def test_feed_fifo_refuses_another_users_fifo(tmp_path, owner, mode):
    """Issue 20 (low): --feed-fifo used any FIFO at the path, also one another user made (and reads from)."""
    import os

    from qrngd.kernel import FifoFeed
    if owner is not None and os.geteuid() != 0:
        pytest.skip("making a FIFO of another user needs root")
    fifo = tmp_path / "rngd.fifo"
    os.mkfifo(fifo, 0o600)
    os.chmod(fifo, mode)
    if owner is not None:
        os.chown(fifo, owner, owner)
    with pytest.raises(OSError, match="the daemon uses only its own FIFO"):
        FifoFeed(fifo)


def test_a_relay_refuses_all_zero_seeds_from_its_upstream():
    """Issue 20 (low): a relay served whatever its upstream sent; all-zero "seed material" fails the source."""
    from qrngd.client import DaemonUnavailable
    from qrngd.tls import Upstream, UpstreamOptions

    class ZerosUpstream:  # a FAKE upstream client, named as such: a broken or hostile remote qrngd
        def seed(self, n: int) -> bytes:
            return bytes(n)
    up = Upstream.__new__(Upstream)
    up.__dict__.update(options=UpstreamOptions("up.example:7465", Path("c"), Path("k"), Path("ca")),
                       client=ZerosUpstream(), _lock=__import__("threading").RLock(), _failure=None, received=0)
    with pytest.raises(DaemonUnavailable, match="zero bytes as seed material"):
        up.extracted(48)
    assert up.failed and up.received == 0


def test_the_raw_sample_ring_is_locked_and_a_full_disk_is_reported(tmp_path, monkeypatch):
    """Issue 20 (low): two daemons with one --retain-dir interleaved and deleted each other's segments; a full disk
    raised out of the source's tap (the source failed over a diagnostic copy). The ring is locked, and a failed
    write stops retention and says why."""
    import errno

    from qrngd.ring import RawRing
    ring = RawRing(tmp_path / "ring", 1 << 20, {"identity": "sim"})
    with pytest.raises(OSError, match="in use by another qrngd"):
        RawRing(tmp_path / "ring", 1 << 20, {"identity": "sim"})
    ring.write(b"\x01" * 1000)

    def full(samples: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ring, "_write", full)
    ring.write(b"\x02" * 10)  # no exception: the source goes on
    assert "No space left on device" in ring.error and "retention stopped" in ring.error
    ring.close()
    RawRing(tmp_path / "ring", 1 << 20, {"identity": "sim"}).close()  # released with the first


def test_client_names_are_shown_to_root_and_the_daemons_group_only():
    """Issue 20 (low): STATUS showed every client's self-chosen name and usage to any local user."""
    d = _daemon()
    s = Session(peer="uid 1000")
    respond(d, s, P.VERSION, P.OP.HELLO, b"pkcs11:secret-project")
    d.counters.clients["pkcs11:secret-project"] = 123
    plain = json.loads(respond(d, Session(peer="uid 1001"), P.VERSION, P.OP.STATUS, b"")[P.HEADER.size:])
    assert "pkcs11:secret-project" not in json.dumps(plain) and sum(plain["clients"].values()) == 123
    full = json.loads(respond(d, Session(privileged=True), P.VERSION, P.OP.STATUS, b"")[P.HEADER.size:])
    assert full["clients"] == {"pkcs11:secret-project": 123}
