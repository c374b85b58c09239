"""`qrng audit keygen` and `qrng audit prove --out` never overwrite a file or write through a symbolic link
(issue 20, low). Regression: keygen checked `exists()`, which is false for a dangling link, then wrote through it;
prove --out overwrote whatever was there. In-process, on temporary files."""

from __future__ import annotations

import os

import qrng_cli


def test_keygen_refuses_a_dangling_link_and_an_existing_file(tmp_path, capsys):
    target = tmp_path / "elsewhere" / "stolen.key"
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "w.key"
    os.symlink(target, link)
    assert qrng_cli.main(["audit", "keygen", "witness.example/w", "--out", str(link)]) == 2
    assert not target.exists() and "refusing" in capsys.readouterr().err
    good = tmp_path / "good.key"
    assert qrng_cli.main(["audit", "keygen", "witness.example/w", "--out", str(good)]) == 0
    assert good.stat().st_mode & 0o077 == 0
    assert qrng_cli.main(["audit", "keygen", "witness.example/w", "--out", str(good)]) == 2


def test_prove_out_never_overwrites(tmp_path, capsys):
    from transparency.log import AuditLog
    from transparency.note import generate_ed25519, load_ed25519_signer
    signer = load_ed25519_signer(generate_ed25519("prove.example/log")[0])
    log = AuditLog(tmp_path / "audit.log", signer.name, signer)
    for i in range(3):
        log.append("s", "o", "e", data={"i": i})
    log.checkpoint()
    log.close()
    out = tmp_path / "p.proof"
    out.write_text("mine")
    assert qrng_cli.main(["audit", "prove", str(tmp_path / "audit.log"), "--index", "1", "--out", str(out)]) == 2
    assert out.read_text() == "mine"
    os.symlink(tmp_path / "nowhere", tmp_path / "q.proof")
    assert qrng_cli.main(["audit", "prove", str(tmp_path / "audit.log"), "--index", "1", "--out",
                          str(tmp_path / "q.proof")]) == 2
    assert not (tmp_path / "nowhere").exists()
    assert qrng_cli.main(["audit", "prove", str(tmp_path / "audit.log"), "--index", "1", "--out",
                          str(tmp_path / "r.proof")]) == 0
    capsys.readouterr()
