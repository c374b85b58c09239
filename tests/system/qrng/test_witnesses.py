"""C2SP tlog-witness with three `qrng witness serve` processes on loopback: the protocol's answers (400, 403, 404,
409 with text/x.tlog.size, 422, 200 with a cosignature/v1 line that verifies); `qrng witness collect` gets the
quorum of a C2SP tlog-policy file and `qrng audit verify --policy` checks it; one witness killed, the quorum is
still met; one restarted with its state answers 409 and the client resends from its size; a forked log is never
cosigned, and the witnesses' state survives it."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.netwait import free_port, wait_for_port
from transparency.log import AuditLog
from transparency.merkle import TreeLevels
from transparency.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    generate_ed25519,
    load_ed25519_signer,
    parse_note,
    verify_note,
)
from transparency.verify import parse_log

ORIGIN = "witness-test.example/log"


def qrng(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, text=True, timeout=300)



class Witness:
    def __init__(self, folder: Path, name: str, log_vkey: str) -> None:
        self.folder, self.name, self.log_vkey = folder, name, log_vkey
        priv, _ = generate_ed25519(f"witness.example/{name}")
        (folder / f"{name}.key").write_text(priv + "\n")
        self.vkey = str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Witness:
        self.proc = subprocess.Popen([sys.executable, "-m", "qrng_cli", "witness", "serve", "--listen",
                                      f"127.0.0.1:{self.port}", "--key", str(self.folder / f"{self.name}.key"),
                                      "--log", self.log_vkey, "--state", str(self.folder / f"{self.name}-state")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc
        wait_for_port(self.port, 20, alive=lambda: proc.poll() is None)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(timeout=10)

    def latest(self) -> str | None:
        h = hashlib.sha256(ORIGIN.encode()).hexdigest()
        try:
            with urllib.request.urlopen(f"{self.url}/{h}/checkpoint", timeout=5) as r:
                return r.read().decode()
        except urllib.error.HTTPError:
            return None


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture()
def world(tmp_path):
    priv, vkey = generate_ed25519(ORIGIN)
    ws = [Witness(tmp_path, f"w{i}", vkey).start() for i in (1, 2, 3)]
    policy = tmp_path / "policy.txt"
    policy.write_text("# C2SP tlog-policy: the log and three witnesses, any two of them\n"
                      f"log {vkey}\n" + "".join(f"witness {w.name} {w.vkey} {w.url}\n" for w in ws)
                      + "group two-of-three 2 w1 w2 w3\nquorum two-of-three\n")
    yield tmp_path, priv, vkey, ws, policy
    for w in ws:
        w.stop(kill=True)


def grow(log: Path, priv: str, n: int, tag: str = "") -> None:
    signer = load_ed25519_signer(priv)
    with AuditLog(log, ORIGIN, signer) as lg, lg.batch():
        for i in range(n):
            lg.append("step", "operator", "event", data={"i": lg.size + i, "tag": tag})
        lg.checkpoint()


def latest_note(log: Path) -> tuple[str, Checkpoint, TreeLevels]:
    view = parse_log(log.read_bytes())
    note = view.checkpoints[-1].note
    return note, Checkpoint.parse(parse_note(note)[0]), TreeLevels(view.leaf_hashes)


def test_the_protocols_answers(world):
    tmp, priv, vkey, ws, _ = world
    w = ws[0]
    log = tmp / "a.log"
    grow(log, priv, 10)
    note, cp, tree = latest_note(log)
    status, _, body = post(w.url, f"old 0\n\n{note}".encode())
    assert status == 200 and body.decode().startswith("\u2014 witness.example/w1 ")
    _, ok = verify_note(note + body.decode(), [load_ed25519_signer((tmp / "w1.key").read_text(),
                                                                   ALG_COSIGNATURE_V1).verifier])
    assert ok  # a cosignature/v1 from the witness's key
    grow(log, priv, 5)
    note2, cp2, tree = latest_note(log)
    proof = "".join(base64.b64encode(h).decode() + "\n" for h in tree.consistency_proof(10, 15))
    status, ctype, body = post(w.url, f"old 0\n\n{note2}".encode())
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"10\n")
    assert post(w.url, f"old 16\n\n{note2}".encode())[0] == 400                     # old larger than the checkpoint
    assert post(w.url, f"old 010\n{proof}\n{note2}".encode())[0] == 400            # leading zero
    assert post(w.url, b"garbage")[0] == 400
    bad_proof = proof.replace(proof[:4], "AAAA", 1)
    assert post(w.url, f"old 10\n{bad_proof}\n{note2}".encode())[0] == 422
    other_priv, _ = generate_ed25519("other.example/log")
    other = tmp / "other.log"
    signer = load_ed25519_signer(other_priv)
    with AuditLog(other, "other.example/log", signer) as lg:
        lg.append("s", "a", "e")
        lg.checkpoint()
    assert post(w.url, f"old 0\n\n{latest_note(other)[0]}".encode())[0] == 404      # unknown origin
    forged = note2.replace("\n15\n", "\n16\n")
    assert post(w.url, f"old 10\n{proof}\n{forged}".encode())[0] == 403            # signature does not verify
    status, _, body = post(w.url, f"old 10\n{proof}\n{note2}".encode())
    assert status == 200
    assert "\n15\n" in w.latest() and body.decode() in w.latest()


def test_quorum_kill_restart_and_fork(world):
    tmp, priv, vkey, ws, policy = world
    log = tmp / "audit.log"
    grow(log, priv, 20)
    r = qrng("witness", "collect", str(log), "--policy", str(policy), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["quorum_met"], r.stdout + r.stderr
    assert sum(w["status"] == "cosigned" for w in out["witnesses"]) >= 2
    assert qrng("audit", "verify", str(log), "--policy", str(policy)).returncode == 0

    # one witness is killed mid-ceremony: the other two still make the quorum
    ws[2].stop(kill=True)
    grow(log, priv, 7)
    r = qrng("witness", "collect", str(log), "--policy", str(policy), "--timeout", "2", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["quorum_met"], r.stdout
    assert qrng("audit", "verify", str(log), "--policy", str(policy)).returncode == 0

    # restarted with its state, w3 remembers the size it cosigned: 409, and the client resends from there
    before = ws[2].start().latest()
    size_before = int(before.split("\n")[1]) if before else 0
    assert size_before in (0, 20)
    ws[0].stop(kill=True)  # now w3 is needed for the quorum
    grow(log, priv, 3)
    r = qrng("witness", "collect", str(log), "--policy", str(policy), "--json")
    out = json.loads(r.stdout)
    w3 = next(w for w in out["witnesses"] if w["name"] == "w3")
    assert r.returncode == 0 and out["quorum_met"] and w3["status"] == "cosigned", out
    if size_before:
        assert "after 409" in w3["detail"]
    ws[0].start()

    # a fork: the same key signs a different history, larger than what the witnesses cosigned: never cosigned
    forked = tmp / "forked.log"
    grow(forked, priv, 40, tag="forked")
    states = {w.name: w.latest() for w in ws}
    r = qrng("witness", "collect", str(forked), "--policy", str(policy), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and not out["quorum_met"], out
    assert not any(w["status"] == "cosigned" for w in out["witnesses"]), out
    assert all("HTTP 422" in w["detail"] or "HTTP 409" in w["detail"] for w in out["witnesses"]), out
    assert {w.name: w.latest() for w in ws} == states  # nothing changed
    r = qrng("audit", "verify", str(forked), "--policy", str(policy))
    assert r.returncode == 1 and "do not meet the quorum" in r.stderr, r.stderr


def test_a_ceremony_collects_its_quorum_from_witness_processes(tmp_path):
    """witness_signoff with the profile's witness_policy: the ceremony's final checkpoint goes to three witness
    processes over tlog-witness; one is down; the two others make the 2-of-3 quorum; the log verifies with the
    policy."""
    import yaml

    from ceremony.runner import _rename_file_key, log_origin

    from ..ceremony.conftest import make_workspace
    (tmp_path / "ws").mkdir()
    ws = make_workspace(tmp_path / "ws")
    origin = log_origin("audit-key-2026")
    log_vkey = str(_rename_file_key((ws.dir / "log.key").read_text(), origin).verifier)
    folder = tmp_path / "witnesses"
    folder.mkdir()
    names = ("carol", "dave", "erin")
    ws_by_name = {}
    for n in names:
        w = Witness(folder, n, log_vkey)
        priv, _ = generate_ed25519(f"witness.example/{n}")  # the script's witness names are key names
        (folder / f"{n}.key").write_text(priv + "\n")
        w.vkey = str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)
        ws_by_name[n] = w
    for n in ("carol", "dave"):
        ws_by_name[n].start()  # erin is down for the whole ceremony
    try:
        policy = ws.dir / "witness-policy.txt"
        policy.write_text(f"log {log_vkey}\n" + "".join(f"witness {n} {w.vkey} {w.url}\n"
                                                        for n, w in ws_by_name.items())
                          + "group two 2 carol dave erin\nquorum two\n")
        prof = ws.dir / "ceremonies" / "profiles.yaml"
        doc = yaml.safe_load(prof.read_text())
        doc["profiles"]["rehearsal-bootstrap"]["witness_policy"] = "../witness-policy.txt"
        prof.write_text(yaml.safe_dump(doc, sort_keys=False))
        r = ws.qrng("ceremony", "run", str(ws.script("audit-key.yaml")), "--profile", "rehearsal-bootstrap")
        assert r.returncode == 0, r.stderr + r.stdout[-3000:]
        assert "witness erin: unreachable" in r.stdout + r.stderr, r.stdout[-2000:]
        log = ws.dir / "out" / "audit-key-2026" / "audit.log"
        r = qrng("audit", "verify", str(log), "--policy", str(policy), "--json")
        assert r.returncode == 0, r.stderr
        assert set(json.loads(r.stdout)["cosigners"]) == {"witness.example/carol", "witness.example/dave"}
        # the witnesses keep the ceremony's checkpoint as the latest they cosigned
        h = hashlib.sha256(origin.encode()).hexdigest()
        with urllib.request.urlopen(f"{ws_by_name['carol'].url}/{h}/checkpoint", timeout=5) as resp:
            assert origin in resp.read().decode()
    finally:
        for w in ws_by_name.values():
            w.stop(kill=True)


def test_an_ml_dsa_44_witness_counts_toward_the_quorum(tmp_path):
    """tlog-cosignature type 0x06: a witness with an ML-DSA-44 key (FIPS 204, verified with cryptography's ML-DSA)
    cosigns over tlog-witness; its cosignature verifies and counts toward a policy's quorum; a changed one does
    not."""
    priv, vkey = generate_ed25519(ORIGIN)
    ed = Witness(tmp_path, "ed", vkey)
    pq = Witness(tmp_path, "pq", vkey)
    r = qrng("audit", "keygen", "witness.example/pq", "--witness", "--mldsa44", "--out", str(tmp_path / "pq.key.new"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "pq.key").write_text((tmp_path / "pq.key.new").read_text())
    pq.vkey = (tmp_path / "pq.key.new.pub").read_text().strip()
    assert base64.b64decode(pq.vkey.split("+", 2)[2])[0] == 0x06
    try:
        ed.start()
        pq.start()
        policy = tmp_path / "policy.txt"
        policy.write_text(f"log {vkey}\nwitness ed {ed.vkey} {ed.url}\nwitness pq {pq.vkey} {pq.url}\n"
                          "group both all ed pq\nquorum both\n")
        log = tmp_path / "pq.log"
        grow(log, priv, 12)
        r = qrng("witness", "collect", str(log), "--policy", str(policy), "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["quorum_met"], r.stdout + r.stderr
        r = qrng("audit", "verify", str(log), "--policy", str(policy), "--json")
        assert r.returncode == 0 and "witness.example/pq" in json.loads(r.stdout)["cosigners"], r.stderr
        data = log.read_bytes()
        line = next(ln for ln in data.split(b"\n") if b"witness.example/pq" in ln and b"cosignature" in ln)
        at = line.rindex(b'"') - 8
        changed = line[:at] + (b"A" if line[at:at + 1] != b"A" else b"B") + line[at + 1:]
        log.write_bytes(data.replace(line, changed))
        r = qrng("audit", "verify", str(log), "--policy", str(policy))
        assert r.returncode == 1, r.stdout + r.stderr
    finally:
        ed.stop(kill=True)
        pq.stop(kill=True)


def test_two_witnesses_sharing_a_key_name_are_counted_by_key(tmp_path):
    """Regression (issue 19): `witness collect` kept one cosignature per key *name*, so of two witnesses whose keys
    share a name only the first counted, and a policy's quorum was decided by names. Both are kept, and the quorum
    `all a b` is met by both and only by both."""
    priv, vkey = generate_ed25519(ORIGIN)
    ws = []
    for name in ("a", "b"):
        w = Witness(tmp_path, name, vkey)
        wpriv, _ = generate_ed25519("witness.example/same")  # the same key name, another key
        (tmp_path / f"{name}.key").write_text(wpriv + "\n")
        w.vkey = str(load_ed25519_signer(wpriv, ALG_COSIGNATURE_V1).verifier)
        ws.append(w)
    try:
        for w in ws:
            w.start()
        policy = tmp_path / "policy.txt"
        policy.write_text(f"log {vkey}\n" + "".join(f"witness {w.name} {w.vkey} {w.url}\n" for w in ws)
                          + "group both all a b\nquorum both\n")
        log = tmp_path / "same.log"
        grow(log, priv, 5)
        r = qrng("witness", "collect", str(log), "--policy", str(policy), "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["quorum_met"], r.stdout + r.stderr
        assert len(parse_log(log.read_bytes()).checkpoints[-1].cosignatures) == 2
        r = qrng("audit", "verify", str(log), "--policy", str(policy), "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(json.loads(r.stdout)["cosigners"]) == 2
        ws[1].stop(kill=True)
        grow(log, priv, 3)
        r = qrng("witness", "collect", str(log), "--policy", str(policy), "--timeout", "2")
        assert r.returncode == 1 and "quorum NOT met" in r.stdout, r.stdout + r.stderr
        r = qrng("audit", "verify", str(log), "--policy", str(policy))
        assert r.returncode == 1 and "do not meet" in r.stderr, r.stdout + r.stderr
    finally:
        for w in ws:
            w.stop(kill=True)


class FakeWitness:
    """A FAKE witness (named as such: a real witness does not misbehave on demand) answering ``mode``: ``garbage``
    (200 and bytes that are no cosignature), ``wrong-key`` (200 and a well-formed cosignature/v1 line by a key the
    policy does not name), ``hang`` (accepts, never answers), ``error`` (HTTP 500)."""

    def __init__(self, mode: str, origin_priv: str) -> None:
        import http.server
        import threading

        wrong = load_ed25519_signer(generate_ed25519("witness.example/fake")[0], ALG_COSIGNATURE_V1)
        self.vkey = str(load_ed25519_signer(generate_ed25519("witness.example/fake")[0],
                                            ALG_COSIGNATURE_V1).verifier)
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if mode == "hang":
                    outer.release.wait(30)
                    return
                if mode == "error":
                    self.send_error(500)
                    return
                if mode == "garbage":
                    answer = b"\x00\xffnot a cosignature\n"
                else:
                    from transparency.note import sign_note
                    note = body.decode().split("\n\n", 1)[1]
                    signed = sign_note(parse_note(note)[0], [wrong])
                    answer = signed[signed.rindex("\u2014 "):].encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.mark.parametrize("mode", ["garbage", "wrong-key", "hang", "error"])
def test_a_witness_answering_garbage_or_nothing_never_counts_and_never_breaks_the_log(world, mode):
    """Game day (issue 22): one of three witnesses misbehaves. Two honest ones still make the quorum; the FAKE one is
    named with what it did, nothing it said enters the log, and the log verifies against the policy. When the
    policy needs all three, the quorum is not met: exit 1, said so."""
    tmp, priv, vkey, ws, _ = world
    fake = FakeWitness(mode, priv)
    try:
        ws[2].stop(kill=True)
        policy = tmp / f"policy-{mode}.txt"
        lines = f"log {vkey}\n" + "".join(f"witness {w.name} {w.vkey} {w.url}\n" for w in ws[:2]) + \
            f"witness fake {fake.vkey} {fake.url}\n"
        policy.write_text(lines + "group two 2 w1 w2 fake\nquorum two\n")
        log = tmp / f"{mode}.log"
        grow(log, priv, 5)
        before_cosigs = log.read_bytes().count(b'"kind":"cosignature"')
        r = qrng("witness", "collect", str(log), "--policy", str(policy), "--timeout", "2", "--json")
        out = json.loads(r.stdout)
        assert r.returncode == 0 and out["quorum_met"], r.stdout + r.stderr
        f = next(w for w in out["witnesses"] if w["name"] == "fake")
        assert f["status"] != "cosigned" and f["detail"], f
        assert len(f["detail"]) < 200 and "\n" not in f["detail"] and "\x1b" not in f["detail"], f
        assert "Traceback" not in r.stderr
        assert log.read_bytes().count(b'"kind":"cosignature"') == before_cosigs + 2  # the two honest ones only
        assert qrng("audit", "verify", str(log), "--policy", str(policy)).returncode == 0
        strict = tmp / f"policy-{mode}-all.txt"
        strict.write_text(lines + "group all 3 w1 w2 fake\nquorum all\n")
        grow(log, priv, 2)
        r = qrng("witness", "collect", str(log), "--policy", str(strict), "--timeout", "2", "--json")
        out = json.loads(r.stdout)
        assert r.returncode == 1 and not out["quorum_met"], r.stdout + r.stderr
        assert "Traceback" not in r.stderr
    finally:
        fake.close()
