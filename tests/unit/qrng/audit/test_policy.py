"""C2SP tlog-policy files: parsed strictly, errors naming the file and line; the quorum rule by groups. Pure."""

from __future__ import annotations

import pytest

from qrng.audit.errors import FormatError
from qrng.audit.note import ALG_COSIGNATURE_V1, generate_ed25519, load_ed25519_signer
from qrng.audit.policy import load_policy, parse_policy

ORIGIN = "witness-test.example/log"


def _witness(name: str) -> str:
    priv, _ = generate_ed25519(name)
    return str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)


@pytest.mark.parametrize("text,message", [
    ("quorum x\n", "policy:1: quorum 'x' is not defined"),
    ("witness a {w}\nwitness a {w}\nquorum a\n", "policy:2: name 'a' is already defined"),
    ("witness a {w}\ngroup g 3 a\nquorum g\n", "threshold '3' must be all, any or 1..1"),
    ("log {w}\n", "no quorum line"),
    ("witness a {log}\nquorum a\n", "must have a cosignature (type 0x04) key"),
    ("wotness a b\nquorum none\n", "unknown line 'wotness'"),
    ("quorum none\x01\n", "control character"),
])
def test_policy_files_are_parsed_strictly(text, message):
    w = _witness("witness.example/a")
    _, log = generate_ed25519(ORIGIN)
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_policy(text.format(w=w, log=log))


def test_groups_and_the_quorum_rule():
    a, b, c = (_witness(f"witness.example/{n}") for n in "abc")
    pol = parse_policy(f"witness a {a}\nwitness b {b}\nwitness c {c}\ngroup two 2 a b c\n"
                       "group strict all two c\nquorum strict\n")
    assert pol.satisfied({"a", "c"}) and not pol.satisfied({"a", "b"}) and not pol.satisfied({"c"})
    assert pol.names_of({"witness.example/a", "other.example/x"}) == {"a"}
    assert parse_policy("quorum none\n").satisfied(set())


def test_files_name_themselves_and_high_bit_octets_are_opaque(tmp_path):
    w = _witness("witness.example/a")
    f = tmp_path / "p.policy"
    f.write_bytes(b"# a comment in Latin-1: \xe9t\xe9\n" + f"witness a {w}\n".encode() + b"quorum a\n")
    assert load_policy(f).quorum == "a"  # not a decoding error
    f.write_bytes(b"witness \xff\xfe " + w.encode() + b"\nquorum \xff\xfe\n")
    assert load_policy(f).satisfied({"\udcff\udcfe"})
    with pytest.raises(FormatError, match=f"{tmp_path / 'missing'}: cannot read the policy"):
        load_policy(tmp_path / "missing")
    f.write_bytes(b"quorum nobody\n")
    with pytest.raises(FormatError, match=f"{f}:1: quorum 'nobody' is not defined"):
        load_policy(f)
