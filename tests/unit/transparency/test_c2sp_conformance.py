"""C2SP points checked one by one (issue 19, section 2), each a regression test that failed before: ASCII-decimal
sizes, non-empty extension lines, 16 post-quantum-size unknown signatures, gzip answers without negotiation, the
tiles Content-Types, witnesses counted by key, and the keys auditors hold (PEM). Pure: no server, no subprocess."""

from __future__ import annotations

import base64
import gzip

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

from transparency.errors import FormatError, QuorumNotMet, TamperedError, TileUnavailable
from transparency.keys import KeyFileMissing, key_from_pem, read_key, signature_ids
from transparency.merkle import EMPTY_ROOT
from transparency.note import (
    ALG_COSIGNATURE_V1,
    DASH,
    Checkpoint,
    cosign,
    ecdsa_signer,
    ed25519_signer,
    sign_note,
    verify_note,
)
from transparency.tileserver import headers_for
from transparency.tilesio import MAX_FETCH, _decode
from transparency.verdict import RecordedRequirement, witness_check
from transparency.witness import add_checkpoint, parse_request

ORIGIN = "c2sp-test.example/log"
ROOT_B64 = base64.b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize("size", ["\u00b2", "\u0661\u0662", "\uff11", "+1", "1_0", "01", " 1", "1 ", ""])
def test_checkpoint_size_is_ascii_decimal_only(size):
    """tlog-checkpoint: the tree size is "the ASCII decimal representation" (str.isdigit() accepts '²')."""
    with pytest.raises(FormatError, match="size"):
        Checkpoint.parse(f"{ORIGIN}\n{size}\n{ROOT_B64}\n")
    assert Checkpoint.parse(f"{ORIGIN}\n10\n{ROOT_B64}\n").size == 10


def test_empty_extension_lines_are_refused():
    """tlog-checkpoint: extension lines, if any, MUST be non-empty."""
    with pytest.raises(FormatError, match="empty extension line"):
        Checkpoint.parse(f"{ORIGIN}\n1\n{ROOT_B64}\n\n")
    with pytest.raises(FormatError, match="empty extension line"):
        Checkpoint.parse(f"{ORIGIN}\n1\n{ROOT_B64}\next\n\n")
    assert Checkpoint.parse(f"{ORIGIN}\n1\n{ROOT_B64}\nextension\n").extensions == ("extension",)


def _log_signer():
    return ed25519_signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())


def _pq_size_unknown_lines(n: int) -> str:
    """n signature lines from keys the verifier does not know, each of ML-DSA-87's size (4,627 bytes)."""
    return "".join(f"{DASH} unknown.example/w{i} {base64.b64encode(bytes(4) + bytes(4627)).decode()}\n"
                   for i in range(n))


def test_sixteen_unknown_post_quantum_signatures_are_accepted():
    """signed-note: verifiers MUST accept at least 16 signatures; unknown ones are ignored."""
    log = _log_signer()
    text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).text()
    note = sign_note(text, [log]) + _pq_size_unknown_lines(16)
    assert verify_note(note, [log.verifier])[0] == text


def test_a_witness_answers_a_request_with_16_pq_size_signatures(tmp_path):
    """tlog-witness through the pure decision: a checkpoint carrying 16 unknown post-quantum-size signatures is
    cosigned (the server's body limit is checked below)."""
    from transparency.witness_server import MAX_BODY, FileState
    log = _log_signer()
    witness = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    note = sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), [log]) + _pq_size_unknown_lines(16)
    body = f"old 0\n\n{note}".encode()
    assert len(body) < MAX_BODY
    a = add_checkpoint(body, {ORIGIN: [log.verifier]}, FileState(tmp_path), witness, 1_700_000_000)
    assert a.status == 200 and a.body.startswith(f"{DASH} witness.example/w ".encode())


@pytest.mark.parametrize("old", ["\u00b2", "\u0662", "+0", "0x0"])
def test_witness_old_size_is_ascii_decimal(old):
    """A Unicode digit in `old` is a 400 (malformed), never an int() exception in the handler."""
    with pytest.raises(FormatError):
        parse_request(f"old {old}\n\nx\n".encode())


def test_gzip_answers_are_decoded_with_or_without_negotiation():
    """tlog-tiles: logs MAY use Content-Encoding: gzip with no negotiation."""
    data = b"\x00\x05hello" * 100
    assert _decode(gzip.compress(data), "gzip", "x") == data
    assert _decode(data, "identity", "x") == data
    with pytest.raises(TamperedError, match="truncated gzip"):
        _decode(gzip.compress(data)[:-12], "gzip", "x")
    with pytest.raises(TileUnavailable, match="more than"):
        _decode(gzip.compress(bytes(MAX_FETCH + 10)), "gzip", "x")  # a gzip bomb is refused, not inflated
    with pytest.raises(TileUnavailable, match="br"):
        _decode(data, "br", "x")


@pytest.mark.parametrize("path, ctype", [
    ("checkpoint", "text/plain; charset=utf-8"),
    ("tile/0/000", "application/octet-stream"),
    ("tile/0/x001/234", "application/octet-stream"),
    ("tile/entries/000.p/7", "application/octet-stream"),
    ("tile/2/000.p/1", "application/octet-stream"),
    ("logs/root-ca-2026/checkpoint", "text/plain; charset=utf-8"),
    ("logs/root-ca-2026/tile/0/000", "application/octet-stream"),
    ("logs/.publisher/state.json", None),
    (".publisher/state.json", None),
    ("tile/.hidden", None),
    ("index.html", None),
])
def test_tiles_server_content_types(path, ctype):
    """tlog-tiles: the checkpoint with `text/plain; charset=utf-8`, tiles and bundles `application/octet-stream`;
    the publisher's state is never served."""
    h = headers_for(path)
    assert (h or {}).get("Content-Type") == ctype
    if path.endswith("checkpoint"):
        assert "max-age=5" in h["Cache-Control"]
    elif ctype and ".p/" not in path:
        assert "immutable" in h["Cache-Control"]


def _cosigned(n_keys, names):
    log = _log_signer()
    text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).text()
    ws = [ed25519_signer(nm, ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1) for nm in names]
    return log, ws, sign_note(text, [log]) + "".join(cosign(text, w, 1_700_000_000).line() for w in ws[:n_keys])


def test_quorum_counts_keys_not_names():
    """Two witness keys share a key name; one cosigned. A quorum of 2 is not met."""
    log, ws, note = _cosigned(1, ["witness.example/same", "witness.example/same"])
    _, ok = verify_note(note, [log.verifier] + [w.verifier for w in ws])
    cosigners = tuple(v for v in ok if v.alg == ALG_COSIGNATURE_V1)
    req = RecordedRequirement(2, (), None, "test")
    with pytest.raises(QuorumNotMet, match="1 cosignature"):
        witness_check(cosigners, 1, 0, req, True)


def test_no_witness_keys_is_not_checked_and_required_when_the_log_asks():
    need = RecordedRequirement(2, ("a", "b"), None, "entry 0")
    c = witness_check((), 2, 5, need, False)
    assert c.result == "not checked" and c.required and "requires 2" in c.detail
    c = witness_check((), 0, 5, RecordedRequirement(0, (), None, "entry 0"), False)
    assert c.result == "not checked" and not c.required


def _pem(pub) -> bytes:
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_a_pem_log_key_verifies_what_its_verifier_string_verifies(kind, tmp_path):
    if kind == "ed25519":
        k = ed25519.Ed25519PrivateKey.generate()
        signer = ed25519_signer(ORIGIN, k)
    else:
        k = ec.generate_private_key(ec.SECP256R1())
        spki = k.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        from cryptography.hazmat.primitives import hashes
        signer = ecdsa_signer(ORIGIN, spki, lambda m: k.sign(m, ec.ECDSA(hashes.SHA256())))
    note = sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), [signer])
    f = tmp_path / "log.pem"
    f.write_bytes(_pem(k.public_key()))
    keys = read_key(str(f), "log", signature_ids([note]))
    assert keys == [signer.verifier]
    assert verify_note(note, keys)[1] == [signer.verifier]
    assert key_from_pem(f.read_bytes(), "log", ORIGIN) == signer.verifier  # qrng audit key --name ORIGIN


def test_a_pem_key_never_verifies_another_keys_signature(tmp_path):
    other = _log_signer()
    note = sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), [other])
    f = tmp_path / "log.pem"
    f.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    from transparency.errors import SignatureError
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        verify_note(note, read_key(str(f), "log", signature_ids([note])))


def test_pem_witness_keys_ed25519_and_mldsa44(tmp_path):
    text = Checkpoint(ORIGIN, 3, b"\x02" * 32).text()
    e = ed25519.Ed25519PrivateKey.generate()
    m = mldsa.MLDSA44PrivateKey.generate()
    from transparency.note import mldsa44_signer
    we = ed25519_signer("witness.example/e", e, ALG_COSIGNATURE_V1)
    wm = mldsa44_signer("witness.example/m", m)
    log = _log_signer()
    note = sign_note(text, [log]) + cosign(text, we, 5).line() + cosign(text, wm, 6).line()
    ids = signature_ids([note])
    for pub, want in ((e.public_key(), we.verifier), (m.public_key(), wm.verifier)):
        f = tmp_path / "w.pem"
        f.write_bytes(_pem(pub))
        assert read_key(str(f), "witness", ids) == [want]


def test_key_files_say_what_is_wrong(tmp_path):
    with pytest.raises(KeyFileMissing, match=f"--key {tmp_path}/nope.pub: no such file"):
        read_key(str(tmp_path / "nope.pub"), "log", what="--key")
    f = tmp_path / "w.pem"
    f.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    with pytest.raises(FormatError, match="a witness key must be Ed25519 or ML-DSA-44"):
        read_key(str(f), "witness")
    w = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    with pytest.raises(FormatError, match="a log key signs checkpoints"):
        read_key(str(w.verifier), "log")


def test_a_checkpoint_of_the_cosigned_size_with_another_root_is_a_409(tmp_path):
    """tlog-witness: "If the old size matches the checkpoint size, the witness MUST check that the root hashes are
    also identical. If they don't match, the witness MUST respond with a 409 Conflict" (it answered 422)."""
    from transparency.merkle import TreeLevels, leaf_hash
    from transparency.witness_server import FileState
    log = _log_signer()
    witness = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    state, logs = FileState(tmp_path), {ORIGIN: [log.verifier]}
    tree = TreeLevels([leaf_hash(bytes([i])) for i in range(5)])
    first = sign_note(Checkpoint(ORIGIN, 5, tree.root(5)).text(), [log])
    assert add_checkpoint(f"old 0\n\n{first}".encode(), logs, state, witness, 1).status == 200
    other = sign_note(Checkpoint(ORIGIN, 5, b"\x07" * 32).text(), [log])
    a = add_checkpoint(f"old 5\n\n{other}".encode(), logs, state, witness, 2)
    assert (a.status, a.body, a.content_type) == (409, b"5\n", "text/x.tlog.size")
    assert add_checkpoint(f"old 5\n\n{first}".encode(), logs, state, witness, 3).status == 200  # the same: fine


@pytest.mark.parametrize("text, message", [
    ("witness a {a}\nwitness b {b}\ngroup g1 any a b\ngroup g2 any a\nquorum g1\n", "'a' is already a member of"),
    ("log {w}\nquorum none\n", "a log key signs checkpoints"),
])
def test_policy_rules_from_the_text(text, message):
    """tlog-policy: "Each defined name can be listed as a group member at most once"; log keys are of a checkpoint
    signature type."""
    from transparency.policy import parse_policy
    a, b, w = (str(ed25519_signer(f"witness.example/{n}", ed25519.Ed25519PrivateKey.generate(),
                                  ALG_COSIGNATURE_V1).verifier) for n in "abw")
    with pytest.raises(FormatError, match=message):
        parse_policy(text.format(a=a, b=b, w=w))


def test_tile_levels_are_0_to_63():
    from transparency.tiles import parse_tile_path
    assert parse_tile_path("tile/63/000")[0] == "63"
    with pytest.raises(FormatError, match="bad tile level"):
        parse_tile_path("tile/64/000")


def test_a_served_checkpoint_must_be_utf8(tmp_path):
    """signed-note: notes MUST be valid UTF-8 (a replacement character never stands in for a bad octet)."""
    from transparency.tilesio import TileSource, verify_tiles
    log = _log_signer()
    note = sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), [log]).encode()
    (tmp_path / "checkpoint").write_bytes(note.replace(b"c2sp-test", b"c2sp\xff", 1))
    with pytest.raises(TamperedError, match="not valid UTF-8"):
        verify_tiles(TileSource(str(tmp_path)), [log.verifier])


def test_a_policys_log_key_name_must_be_the_checkpoints_origin(tmp_path, capsys):
    """tlog-policy: a log's key name "MUST correspond to the log's origin line". A checkpoint for another origin
    signed by the policy's log key is not that log's."""
    import qrng_cli
    from transparency.log import AuditLog
    from transparency.note import generate_ed25519, load_ed25519_signer
    signer = load_ed25519_signer(generate_ed25519("a.example/log")[0])
    log = AuditLog(tmp_path / "audit.log", "b.example/log", signer)  # the origin is not the key's name
    log.append("s", "o", "e", data={})
    log.checkpoint()
    log.close()
    (tmp_path / "policy").write_text(f"log {signer.verifier}\nquorum none\n")
    code = qrng_cli.main(["audit", "verify", str(tmp_path / "audit.log"), "--policy", str(tmp_path / "policy")])
    assert code == 1 and "is not the key name of a log" in capsys.readouterr().err


def test_only_a_witnesss_own_verified_lines_count_as_its_cosignature():
    """Issue 20 (medium): a bogus line under the witness's name, placed first in its answer, is never taken as its
    cosignature; an answer with only bogus lines is not COSIGNED."""
    from transparency.errors import SignatureError
    from transparency.witness_client import witness_lines
    log = _log_signer()
    text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).text()
    note = sign_note(text, [log])
    real = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    impostor = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    good, bogus = cosign(text, real, 7).line(), cosign(text, impostor, 7).line()
    assert witness_lines(note, (bogus + good).encode(), real.verifier) == (good,)
    with pytest.raises(SignatureError):
        witness_lines(note, bogus.encode(), real.verifier)
