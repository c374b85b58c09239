"""C2SP signed notes, checkpoints and cosignatures: published vectors, every signature type, malformed input."""

from __future__ import annotations

import re
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from transparency.errors import FormatError, SignatureError
from transparency.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Verifier,
    cosign,
    ecdsa_signer,
    ed25519_signer,
    load_ed25519_signer,
    parse_note,
    sign_note,
    verify_note,
)

# golang.org/x/mod/sumdb/note's documented example, and the example of c2sp.org/signed-note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = ("\u2014 PeterNeumann "
          "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7"
             "Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")


def test_go_vector_signs_byte_for_byte():
    s = load_ed25519_signer(GO_SKEY)
    assert str(s.verifier) == GO_VKEY
    assert sign_note(GO_TEXT, [s]) == GO_TEXT + "\n" + GO_SIG


def test_spec_example_verifies():
    text, ok = verify_note(SPEC_NOTE, [Verifier.parse(SPEC_VKEY)])
    assert text == "This is an example message.\n" and ok[0].name == "example.com/foo"


def test_unknown_keys_are_ignored_but_a_bad_known_signature_rejects():
    other = ed25519_signer("other.example", ed25519.Ed25519PrivateKey.generate())
    note = sign_note(GO_TEXT, [load_ed25519_signer(GO_SKEY), other])
    verify_note(note, [Verifier.parse(GO_VKEY)])  # the unknown key's line is ignored
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        verify_note(note, [other.verifier.__class__.parse(SPEC_VKEY)])
    tampered = note.replace("problem,", "problems,")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_note(tampered, [Verifier.parse(GO_VKEY)])


def test_ecdsa_type_02_key_id_and_der_signature():
    k = ec.generate_private_key(ec.SECP256R1())
    spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    s = ecdsa_signer("log.example/ecdsa", spki, lambda m: k.sign(m, ec.ECDSA(hashes.SHA256())))
    import hashlib
    assert s.verifier.key_id == hashlib.sha256(spki).digest()[:4]  # key ID hashes the DER SPKI only
    assert Verifier.parse(str(s.verifier)) == s.verifier
    note = sign_note(Checkpoint("log.example/ecdsa", 3, bytes(32)).text(), [s])
    verify_note(note, [s.verifier])


def test_cosignature_v1():
    w = ed25519_signer("witness.example/w", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    log = ed25519_signer("log.example", ed25519.Ed25519PrivateKey.generate())
    cp = Checkpoint("log.example", 10, bytes(range(32))).text()
    sig = cosign(cp, w, 1700000000)
    assert struct.unpack(">Q", sig.signature[:8])[0] == 1700000000 and len(sig.signature) == 72
    note = sign_note(cp, [log]) + sig.line()
    _, ok = verify_note(note, [w.verifier])
    assert ok == [w.verifier]
    forged = note.replace(sig.line(), cosign(cp, w, 1700000001).line()[:-30] + sig.line()[-30:])
    with pytest.raises((SignatureError, FormatError)):
        verify_note(forged, [w.verifier])


@pytest.mark.parametrize("bad,phrase", [
    ("no blank line\n", "no blank line"),
    ("text\n\nnot a signature\n", "em dash"),
    ("text\n\n\u2014 name !!!notbase64\n", "malformed signature"),
    ("text\n\n", "no signatures"),
    ("text\x07\n\n\u2014 a AAAAAAA=\n", "control character"),
])
def test_malformed_notes(bad, phrase):
    with pytest.raises(FormatError, match=phrase):
        parse_note(bad)


@pytest.mark.parametrize("text,phrase", [
    ("origin\n5\n", "origin, size and root"),
    ("origin\n05\nAAAA\n", "leading zeros"),
    ("origin\n5\nAAAA\n", "not 32"),
    ("\n5\n" + "A" * 43 + "=\n", "origin is empty"),
])
def test_malformed_checkpoints(text, phrase):
    with pytest.raises(FormatError, match=phrase):
        Checkpoint.parse(text)


def test_checkpoint_roundtrip_with_extensions():
    cp = Checkpoint("o.example/x", 1234, bytes(range(32)), ("ext line",))
    assert Checkpoint.parse(cp.text()) == cp


@pytest.mark.parametrize("key,phrase", [
    ("a+b", "name+id+key"), ("name+zzzzzzzz+AQ==", "bad hex"), ("na me+c74f20a3+ARpc", "without spaces"),
    ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
])
def test_malformed_verifier_keys(key, phrase):
    with pytest.raises(FormatError, match=re.escape(phrase)):
        Verifier.parse(key)


# --- issue 10 item 19: as strict as c2sp.org/signed-note and Go's note.Open -------------------------------------
SIG_B64 = SPEC_NOTE.rsplit(" ", 1)[1]


@pytest.mark.parametrize("block, phrase", [
    ("\u2014 example.com+foo " + SIG_B64, "must be non-empty, without spaces or '+'"),
    ("\u2014 example.com\u00a0foo " + SIG_B64, "must be non-empty, without spaces or '+'"),
    ("\u2014 example.com/foo " + SIG_B64[:-1] + "\r\n", "control character"),
    ("\u2014 example.com/foo " + SIG_B64[:-1] + "\x0b\n", "control character"),
    ("\u2014 example.com/foo " + SIG_B64[:-1] + "\x0c\n", "control character"),
    ("\u2014 example.com/foo " + SIG_B64[:-1] + "\u2028\u2014 example.com/foo " + SIG_B64, "malformed signature line"),
])
def test_signature_block_is_strict(block, phrase):
    with pytest.raises(FormatError, match=re.escape(phrase)):
        parse_note("This is an example message.\n\n" + block)


def test_the_strict_parser_still_reads_the_spec_example():
    text, sigs = parse_note(SPEC_NOTE)
    assert text == "This is an example message.\n" and sigs[0].name == "example.com/foo"


@pytest.mark.parametrize("timestamp", [1 << 63, (1 << 64) - 1])
def test_cosignature_timestamps_of_2_63_or_more_are_refused(timestamp):
    log = ed25519_signer("log.example", ed25519.Ed25519PrivateKey.generate())
    wkey = ed25519.Ed25519PrivateKey.generate()
    from transparency.note import NoteSignature, cosignature_message, format_note
    wsigner = ed25519_signer("witness.example", wkey)
    wver = Verifier("witness.example", wsigner.verifier.key_id, ALG_COSIGNATURE_V1, wsigner.verifier.public_key)
    cp = Checkpoint("log.example", 1, bytes(32)).text()
    note = sign_note(cp, [log])
    sig = struct.pack(">Q", timestamp) + wkey.sign(cosignature_message(cp, timestamp))
    forged = note + format_note(cp, [NoteSignature("witness.example", wver.key_id, sig)]).split("\n\n", 1)[1]
    with pytest.raises(SignatureError, match="not below 2\\^63"):
        verify_note(forged, [log.verifier, wver])


def _cases() -> list[tuple[str, Verifier, bytes, bytes]]:
    ed = ed25519_signer("log.example/ed", ed25519.Ed25519PrivateKey.generate())
    k = ec.generate_private_key(ec.SECP256R1())
    spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ecd = ecdsa_signer("log.example/ecdsa", spki, lambda m: k.sign(m, ec.ECDSA(hashes.SHA256())))
    w = ed25519_signer("witness.example", ed25519.Ed25519PrivateKey.generate(), ALG_COSIGNATURE_V1)
    m = b"message"
    return [("ed25519", ed.verifier, m, ed.sign(m)), ("ecdsa", ecd.verifier, m, ecd.sign(m)),
            ("cosignature", w.verifier, m, struct.pack(">Q", 1) + w.sign(m))]


def test_verifier_verify_raises_and_never_returns_false():
    """Issue 21: verification raises, never returns False (a bool result is one forgotten ``if`` from a pass)."""
    for name, v, m, sig in _cases():
        assert v.verify(m, sig) is None, name
        assert v.accepts(m, sig), name
        for bad_m, bad_sig in ((m + b"!", sig), (m, sig[:-1]), (m, b""), (m, bytes(len(sig)))):
            with pytest.raises(SignatureError, match=f"signature by {re.escape(v.name)} .* does not verify"):
                v.verify(bad_m, bad_sig)
            assert not v.accepts(bad_m, bad_sig), name
