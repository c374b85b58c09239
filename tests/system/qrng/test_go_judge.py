"""A second opinion from Go's golang.org/x/mod (Debian's golang-golang-x-mod-dev, built here with Debian's Go):
sumdb/note opens our checkpoints with the log's verifier key, ignoring the witnesses' cosignature lines as unknown
signatures; sumdb/tlog accepts our RFC 9162 inclusion and consistency proofs and rejects altered ones. An
independent implementation must agree with ours (tests/system/qrng/go_judge/judge.go is only a harness)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from transparency.log import AuditLog
from transparency.merkle import TreeLevels
from transparency.note import ALG_COSIGNATURE_V1, Checkpoint, cosign, generate_ed25519, load_ed25519_signer
from transparency.verify import _with_cosignatures, parse_log, verify_log

HERE = Path(__file__).resolve().parent
GOPATH = "/usr/share/gocode"  # Debian's Go source packages


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    if shutil.which("go") is None or not (Path(GOPATH) / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail("Go and golang-golang-x-mod-dev are not installed; `make provision` installs them")
    d = tmp_path_factory.mktemp("go-judge")
    env = {**os.environ, "GOPATH": GOPATH, "GO111MODULE": "off", "GOCACHE": str(d / "cache"), "GOFLAGS": ""}
    subprocess.run(["go", "build", "-o", str(d / "judge"), str(HERE / "go_judge" / "judge.go")], check=True,
                   env=env, cwd=d, timeout=300)
    return d / "judge"


def ask(judge: Path, **req: object) -> dict:
    def b64(v: object) -> object:
        if isinstance(v, bytes):
            return base64.b64encode(v).decode()
        if isinstance(v, list):
            return [b64(x) for x in v]
        return v
    r = subprocess.run([str(judge)], input=json.dumps({k: b64(v) for k, v in req.items()}), capture_output=True,
                       text=True, timeout=60, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    d = tmp_path_factory.mktemp("go-judge-log")
    priv, vkey = generate_ed25519("judge.example/log")
    signer = load_ed25519_signer(priv)
    lg = AuditLog(d / "audit.log", signer.name, signer)
    for batch in (7, 300, 61):
        for _ in range(batch):
            lg.append("step", "operator", "event", data={"i": lg.size})
        lg.checkpoint()
    w = load_ed25519_signer(generate_ed25519("witness.example/judge")[0], ALG_COSIGNATURE_V1)
    lg.add_cosignature(lg.size, cosign(Checkpoint(signer.name, lg.size, lg.root()).text(), w, 1_700_000_000))
    lg.close()
    data = (d / "audit.log").read_bytes()
    verify_log(data, [signer.verifier], [w.verifier], 1)  # ours says yes
    return data, vkey


def test_go_opens_our_checkpoints_and_agrees_on_proofs(judge, log):
    data, vkey = log
    view = parse_log(data)
    tree = TreeLevels(view.leaf_hashes)
    last, earlier = view.checkpoints[-1], view.checkpoints[1]
    size, old = last.position, earlier.position
    for index in (0, 6, 255, 256, old - 1, size - 1):
        ans = ask(judge, vkey=vkey, note=_with_cosignatures(last), size=size, root=tree.root(size), index=index,
                  entry=view.entries[index], inclusion=tree.inclusion_proof(index, size), old_size=old,
                  old_root=tree.root(old), consistency=tree.consistency_proof(old, size))
        assert ans["note"] == "ok" and ans["signers"] == ["judge.example/log"] and ans["unverified"] == 1, ans
        assert ans["text"] == Checkpoint("judge.example/log", size, tree.root(size)).text()
        assert ans["inclusion"] == "ok" and ans["consistency"] == "ok", ans


def test_go_rejects_what_ours_rejects(judge, log):
    data, vkey = log
    view = parse_log(data)
    tree = TreeLevels(view.leaf_hashes)
    size, old = view.checkpoints[-1].position, view.checkpoints[0].position
    proof = tree.inclusion_proof(5, size)
    bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    note = view.checkpoints[-1].note
    forged = note.replace(note.split("\n")[1], str(size + 1), 1)
    ans = ask(judge, vkey=vkey, note=forged, size=size, root=tree.root(size), index=5, entry=view.entries[5],
              inclusion=bad, old_size=old, old_root=bytes(32), consistency=tree.consistency_proof(old, size))
    assert ans["note"] != "ok" and ans["inclusion"] != "ok" and ans["consistency"] != "ok", ans
