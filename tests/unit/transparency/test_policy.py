"""C2SP tlog-policy files: parsed strictly, errors naming the file and line; the quorum rule by groups. Pure."""

from __future__ import annotations

import pytest

from transparency.errors import FormatError
from transparency.note import ALG_COSIGNATURE_V1, Verifier, generate_ed25519, load_ed25519_signer
from transparency.policy import load_policy, parse_policy

ORIGIN = "witness-test.example/log"


def _witness(name: str) -> str:
    priv, _ = generate_ed25519(name)
    return str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)


@pytest.mark.parametrize("text,message", [
    ("quorum x\n", "policy:1: quorum 'x' is not defined"),
    ("witness a {w}\nwitness a {w}\nquorum a\n", "policy:2: name 'a' is already defined"),
    ("witness a {w}\ngroup g 3 a\nquorum g\n", "threshold '3' must be all, any or 1..1"),
    ("log {log}\n", "no quorum line"),
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
    pol = parse_policy(f"witness a {a}\nwitness b {b}\nwitness c {c}\ngroup two 2 a b\n"
                       "group strict all two c\nquorum strict\n")
    assert pol.satisfied({"a", "b", "c"}) and not pol.satisfied({"a", "c"}) and not pol.satisfied({"a", "b"})
    keys = {w.key.name: w.key for w in pol.witnesses.values()}
    assert pol.names_of([keys["witness.example/a"], Verifier.parse(_witness("other.example/x"))]) == {"a"}
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


def test_two_witnesses_sharing_a_key_name_are_two_witnesses():
    """Regression (issue 19): `group both all a b` over two keys with the same key name was met by one of them,
    because cosigners were matched by key name. tlog-policy identifies witnesses by their public keys."""
    a = Verifier.parse(_witness("witness.example/same"))
    b = Verifier.parse(_witness("witness.example/same"))
    assert a.name == b.name and a != b
    pol = parse_policy(f"witness a {a}\nwitness b {b}\ngroup both all a b\nquorum both\n")
    assert not pol.met_by([a]) and not pol.met_by([b]) and pol.met_by([a, b])
    assert pol.names_of([a]) == {"a"}


@pytest.mark.parametrize("sep", ["\u00a0", "\u2003", "\u3000", "\x85"])
def test_only_ascii_space_and_tab_separate_fields(sep):
    """Regression (issue 19): str.split() also split on Unicode spaces; tlog-policy fields are separated by ASCII
    space and tab only, so such a character stays part of a field (and the line is then wrong, not reinterpreted)."""
    w = _witness("witness.example/a")
    assert parse_policy(f"witness\ta \t {w}\nquorum a\n").quorum == "a"
    with pytest.raises(FormatError):
        parse_policy(f"witness a{sep}{w}\nquorum a\n")


@pytest.mark.parametrize("k", ["\u00b2", "\u0662", "+1", "1_0", "01", "99999999999999999999"])
def test_thresholds_are_ascii_decimal_only(k):
    """Regression (issue 19): '²' and Arabic-Indic digits passed str.isdigit(), then int() either accepted them or
    raised out of the parser."""
    w = _witness("witness.example/a")
    with pytest.raises(FormatError, match="threshold"):
        parse_policy(f"witness a {w}\ngroup g {k} a\nquorum g\n")


def test_high_bit_witness_names_are_opaque_and_matched_by_key(tmp_path):
    """A policy name with high-bit octets (kept opaque) is a name like any other; the witness is its key."""
    f = tmp_path / "p.policy"
    w = Verifier.parse(_witness("witness.example/a"))
    f.write_bytes(b"witness \xe9 " + str(w).encode() + b"\nquorum \xe9\n")
    pol = load_policy(f)
    assert pol.met_by([w]) and not pol.met_by([Verifier.parse(_witness("witness.example/a"))])
