"""Errors about keys never echo key material (issue 10 item 10); a missing key file is named as such (item 18)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import qrng_cli
from transparency.errors import FormatError
from transparency.note import Verifier, generate_ed25519


def _pem_private() -> str:
    k = ec.generate_private_key(ec.SECP256R1())
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def _secret_fragments(text: str) -> list[str]:
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    return [body[i:i + 8] for i in range(0, len(body) - 8, 8)]


@pytest.mark.parametrize("make, kind", [(_pem_private, "a PEM private key"),
                                        (lambda: generate_ed25519("log.example/x")[0], "a signed-note private key")])
def test_private_key_is_described_not_quoted(make, kind):
    secret = make()
    with pytest.raises(FormatError) as exc:
        Verifier.parse(secret)
    msg = str(exc.value)
    assert kind in msg
    assert not any(frag in msg for frag in _secret_fragments(secret.replace("PRIVATE+KEY+", "")))


def test_cli_with_private_key_file_exits_2_without_echo(tmp_path, capsys):
    secret = _pem_private()
    key = tmp_path / "private.pem"
    key.write_text(secret)
    log = tmp_path / "audit.log"
    log.write_text("")
    assert qrng_cli.main(["audit", "verify", str(log), "--key", str(key)]) == 2
    err = capsys.readouterr().err
    assert "PEM private key" in err
    assert not any(frag in err for frag in _secret_fragments(secret))


def test_missing_key_file_is_named(tmp_path, capsys):
    log = tmp_path / "audit.log"
    log.write_text("")
    assert qrng_cli.main(["audit", "verify", str(log), "--key", str(tmp_path / "missing.pub")]) == 2
    assert "missing.pub: no such file" in capsys.readouterr().err
