"""The log writer: durable appends, torn tails refused or recovered (and recorded), checkpoints, proofs."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from transparency.errors import TornLogError
from transparency.log import AuditLog
from transparency.merkle import TreeLevels
from transparency.note import ed25519_signer
from transparency.proof import format_proof, parse_proof, verify_proof
from transparency.verify import parse_log, verify_log

ORIGIN = "test.invalid/log"


@pytest.fixture()
def signer():
    return ed25519_signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())


def make(path, signer, n=5):
    with AuditLog(path, ORIGIN, signer, ceremony="c1") as log:
        for i in range(n):
            log.append("s", "op", "ev", files={"out.pem": "ab" * 32}, data={"i": i})
        log.checkpoint()


def test_reopen_continues_the_tree(tmp_path, signer):
    p = tmp_path / "a.log"
    make(p, signer, 3)
    with AuditLog(p, ORIGIN, signer) as log:
        assert log.size == 3
        log.append("s", "op", "more")
        log.checkpoint()
    r = verify_log(p.read_bytes(), [signer.verifier])
    assert r.entries == 4 and r.checkpoints == 2


def test_torn_tail_is_refused_then_recovered_and_recorded(tmp_path, signer):
    p = tmp_path / "a.log"
    make(p, signer, 3)
    with open(p, "ab") as f:
        f.write(b'{"kind":"entry","seq":3,"ti')  # a crash mid-write
    with pytest.raises(TornLogError, match="torn last record"):
        AuditLog(p, ORIGIN, signer)
    with pytest.raises(TornLogError):
        parse_log(p.read_bytes())
    with AuditLog(p, ORIGIN, signer, recover=True) as log:
        log.checkpoint()
    view = parse_log(p.read_bytes())
    last = json.loads(view.entries[-1])
    assert last["event"] == "log.recovered" and last["data"]["dropped_bytes"] == 27
    verify_log(p.read_bytes(), [signer.verifier])


def test_nothing_already_written_is_lost_on_error(tmp_path, signer):
    p = tmp_path / "a.log"
    make(p, signer, 2)
    before = p.read_bytes()
    with pytest.raises(TypeError), AuditLog(p, ORIGIN, signer) as log:
        log.append("s", "op", "bad", data={"x": object()})  # not serialisable: refused before writing
    assert p.read_bytes() == before


def test_batch_appends(tmp_path, signer):
    p = tmp_path / "a.log"
    with AuditLog(p, ORIGIN, signer) as log:
        with log.batch():
            for i in range(100):
                log.append("s", "op", "ev", data={"i": i})
        log.checkpoint()
    assert verify_log(p.read_bytes(), [signer.verifier]).entries == 100


def test_proof_file_roundtrip(tmp_path, signer):
    p = tmp_path / "a.log"
    make(p, signer, 9)
    view = parse_log(p.read_bytes())
    tree = TreeLevels(view.leaf_hashes)
    text = format_proof(4, tree.inclusion_proof(4, 9), view.checkpoints[-1].note, extra=b"ctx")
    idx, hashes, note, extra = parse_proof(text)
    assert (idx, extra, note) == (4, b"ctx", view.checkpoints[-1].note)
    cp = verify_proof(text, view.entries[4], [signer.verifier])
    assert cp.size == 9
    with pytest.raises(Exception, match="does not lead to the root"):
        verify_proof(text, view.entries[5], [signer.verifier])


def test_an_append_the_file_system_refuses_leaves_the_log_as_it_was(tmp_path, signer):
    """Regression (game day, disk full): a short write then ENOSPC left a torn record in the file while the
    in-memory tree moved on. A real kernel refusal here: RLIMIT_FSIZE in a child process (EFBIG after a short
    write, exactly as a full disk gives ENOSPC), then the same log appended again in this process and verified."""
    import subprocess
    import sys
    import textwrap

    p = tmp_path / "a.log"
    make(p, signer, 3)
    before = p.read_bytes()
    child = textwrap.dedent(f"""
        import errno, resource, signal, sys
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from transparency.log import AuditLog
        from transparency.note import ed25519_signer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        log = AuditLog({str(p)!r}, {ORIGIN!r}, ed25519_signer({ORIGIN!r}, ed25519.Ed25519PrivateKey.generate()))
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 40}, resource.RLIM_INFINITY))
        try:
            log.append("s", "op", "too-big", data={{"pad": "x" * 500}})
        except OSError as exc:
            print(exc.errno == errno.EFBIG, exc.filename, log.size)
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", str(p), "3"], r.stdout + r.stderr  # named, and the tree did not move on
    assert p.read_bytes() == before  # no torn record: the 40 bytes that fitted were taken back
    with AuditLog(p, ORIGIN, signer) as log:  # opens without recovery: nothing to recover
        log.append("s", "op", "after")
        log.checkpoint()
    assert verify_log(p.read_bytes(), [signer.verifier]).entries == 4
