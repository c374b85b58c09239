"""The audit log as static C2SP tlog-tiles, served by a plain static web server on loopback (`python -m
http.server`) and verified from there by `qrng audit verify` and `qrng audit prove` with --state: a tampered tile,
a missing tile, a stale (rolled-back) checkpoint and a fork are each caught; publishing is incremental and never
rewrites a full tile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netwait import free_port, wait_for_port
from transparency.log import AuditLog
from transparency.note import generate_ed25519, load_ed25519_signer
from transparency.tiles import tile_path


def qrng(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, text=True, timeout=300)



@pytest.fixture()
def served(tmp_path):
    """A static server on loopback for tmp_path/www; yields (folder, URL)."""
    www = tmp_path / "www"
    www.mkdir()
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
                          str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, 10, alive=lambda: p.poll() is None)
    yield www, f"http://127.0.0.1:{port}"
    p.terminate()
    p.wait(timeout=10)


def make_log(path: Path, origin: str, key_text: str, batches: list[int], tag: str = "") -> None:
    signer = load_ed25519_signer(key_text)
    log = AuditLog(path, origin, signer)
    n = log.size
    for b in batches:
        with log.batch():
            for i in range(b):
                log.append("step", "operator", "event", data={"i": n + i, "tag": tag})
            log.checkpoint()
        n += b
    log.close()


@pytest.fixture()
def keys(tmp_path):
    priv, pub = generate_ed25519("tiles.example/qrng-log")
    (tmp_path / "log.pub").write_text(pub + "\n")
    return priv, tmp_path / "log.pub"


def test_publish_serve_verify_and_prove_over_http(tmp_path, served, keys):
    www, url = served
    priv, pub = keys
    log = tmp_path / "audit.log"
    make_log(log, "tiles.example/qrng-log", priv, [300, 200])
    tiles = www / "log"
    r = qrng("audit", "publish", str(log), str(tiles), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["tree_size"] == 500, r.stderr
    full = tiles / tile_path(0, 0)
    stamp = full.stat().st_mtime_ns
    state = tmp_path / "state"
    r = qrng("audit", "verify", f"{url}/log", "--key", str(pub), "--state", str(state), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["entries"] == 500 and out["tree_size"] == 500 and out["origin"] == "tiles.example/qrng-log"
    # the log grows: an incremental publish writes only what is new; full tiles are never rewritten
    make_log(log, "tiles.example/qrng-log", priv, [100])
    r = qrng("audit", "publish", str(log), str(tiles), "--json")
    pub_out = json.loads(r.stdout)
    assert pub_out["new_entries"] == 100 and pub_out["tree_size"] == 600
    assert full.stat().st_mtime_ns == stamp
    r = qrng("audit", "prove", f"{url}/log", "--index", "550", "--key", str(pub), "--state", str(state),
             "--out", str(tmp_path / "p.proof"))
    assert r.returncode == 0, r.stderr
    fetches = int(r.stderr.split(" from ")[1].split()[0])
    assert fetches <= 20  # checkpoint, one entry bundle, O(log n) hash tiles
    r = qrng("audit", "check-proof", str(tmp_path / "p.proof"), str(tmp_path / "p.entry"), "--key", str(pub))
    assert r.returncode == 0 and "tree size 600" in r.stdout, r.stderr
    # the same proof from the local JSON log agrees with the tiles
    assert qrng("audit", "verify", str(log), "--key", str(pub)).returncode == 0


def test_tampered_missing_stale_and_forked_tiles_are_caught(tmp_path, served, keys):
    www, url = served
    priv, pub = keys
    log = tmp_path / "audit.log"
    make_log(log, "tiles.example/qrng-log", priv, [600])
    tiles = www / "log"
    assert qrng("audit", "publish", str(log), str(tiles)).returncode == 0
    state = tmp_path / "state"
    assert qrng("audit", "verify", f"{url}/log", "--key", str(pub), "--state", str(state)).returncode == 0

    # a tampered hash tile: full verification names it; a proof through it does not verify
    t = tiles / tile_path(0, 1)
    good = t.read_bytes()
    t.write_bytes(good[:32] + bytes(32) + good[64:])
    r = qrng("audit", "verify", f"{url}/log", "--key", str(pub))
    assert r.returncode == 1 and "tile/0/001 differs" in r.stderr, r.stderr
    r = qrng("audit", "prove", f"{url}/log", "--index", "300", "--key", str(pub))
    assert r.returncode == 1 and "does not verify against the signed checkpoint" in r.stderr, r.stderr
    t.write_bytes(good)

    # a missing tile: not verified (exit 1), never a pass
    t.rename(t.with_suffix(".gone"))
    r = qrng("audit", "prove", f"{url}/log", "--index", "300", "--key", str(pub))
    assert r.returncode == 1 and "HTTP 404" in r.stderr, r.stderr
    t.with_suffix(".gone").rename(t)

    # the log grows and is verified; then the server rolls back to the old checkpoint
    old_cp = (tiles / "checkpoint").read_bytes()
    make_log(log, "tiles.example/qrng-log", priv, [50])
    assert qrng("audit", "publish", str(log), str(tiles)).returncode == 0
    assert qrng("audit", "verify", f"{url}/log", "--key", str(pub), "--state", str(state)).returncode == 0
    (tiles / "checkpoint").write_bytes(old_cp)
    r = qrng("audit", "prove", f"{url}/log", "--index", "10", "--key", str(pub), "--state", str(state))
    assert r.returncode == 1 and "rolled back" in r.stderr, r.stderr

    # a fork: the same key signs a different history of the same origin, published in a fresh folder
    forked = tmp_path / "forked.log"
    make_log(forked, "tiles.example/qrng-log", priv, [700], tag="forked")
    shutil.rmtree(tiles)
    assert qrng("audit", "publish", str(forked), str(tiles)).returncode == 0
    r = qrng("audit", "prove", f"{url}/log", "--index", "10", "--key", str(pub), "--state", str(state))
    assert r.returncode == 1 and "fork" in r.stderr, r.stderr
    r = qrng("audit", "verify", f"{url}/log", "--key", str(pub), "--state", str(state))
    assert r.returncode == 1 and "fork" in r.stderr, r.stderr


def test_publishing_refuses_a_rewritten_log_and_oversized_entries(tmp_path, keys):
    priv, _ = keys
    log = tmp_path / "audit.log"
    make_log(log, "tiles.example/qrng-log", priv, [10])
    tiles = tmp_path / "tiles"
    assert qrng("audit", "publish", str(log), str(tiles)).returncode == 0
    before = {p: p.read_bytes() for p in tiles.rglob("*") if p.is_file()}
    log.unlink()
    (tmp_path / "audit.log.lock").unlink(missing_ok=True)
    make_log(log, "tiles.example/qrng-log", priv, [12], tag="rewritten")
    r = qrng("audit", "publish", str(log), str(tiles))
    assert r.returncode == 1 and "fork" in r.stderr and "nothing was published" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in tiles.rglob("*") if p.is_file()} == before
    big = tmp_path / "big.log"
    signer = load_ed25519_signer(priv)
    with AuditLog(big, "tiles.example/qrng-log", signer) as lg:
        lg.append("step", "operator", "event", data={"blob": "x" * 70_000})
        lg.checkpoint()
    r = qrng("audit", "publish", str(big), str(tmp_path / "big-tiles"))
    assert r.returncode == 2 and "does not fit an entry bundle" in r.stderr, r.stderr
    assert not (tmp_path / "big-tiles" / "checkpoint").exists()


def test_qrng_audit_serve_sends_the_content_types_tlog_tiles_requires(tmp_path, keys):
    """C2SP tlog-tiles: the checkpoint as `text/plain; charset=utf-8`, tiles and bundles as
    `application/octet-stream`; the publisher's state is not served. (A plain `python -m http.server` sends
    `application/octet-stream` for the checkpoint: the demo and docs now serve with `qrng audit serve`.)"""
    import urllib.error
    import urllib.request
    priv, pub = keys
    log = tmp_path / "audit.log"
    make_log(log, "tiles.example/qrng-log", priv, [300])
    assert qrng("audit", "publish", str(log), str(tmp_path / "tiles")).returncode == 0
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "audit", "serve", str(tmp_path / "tiles"), "--listen",
                          f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 10, alive=lambda: p.poll() is None)
        url = f"http://127.0.0.1:{port}"
        for path, ctype in (("checkpoint", "text/plain; charset=utf-8"), ("tile/0/000", "application/octet-stream"),
                            ("tile/entries/001.p/44", "application/octet-stream")):
            with urllib.request.urlopen(f"{url}/{path}", timeout=5) as r:
                assert r.headers["Content-Type"] == ctype, path
                assert ("immutable" in r.headers["Cache-Control"]) == (path == "tile/0/000")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{url}/.publisher/state.json", timeout=5)
        assert exc.value.code == 404
        assert qrng("audit", "verify", url, "--key", str(pub)).returncode == 0
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_a_log_served_gzipped_without_negotiation_verifies(tmp_path, keys):
    """tlog-tiles: "Logs MAY use Content-Encoding: gzip with no negotiation", and clients SHOULD send
    `Accept-Encoding: gzip, identity`. A server that gzips every answer (a CDN setting) is verified and proved
    from. Regression: urllib does not decompress by itself, so such a log failed to verify."""
    import functools
    import gzip
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    priv, pub = keys
    log = tmp_path / "audit.log"
    make_log(log, "tiles.example/qrng-log", priv, [300, 40])
    assert qrng("audit", "publish", str(log), str(tmp_path / "tiles")).returncode == 0
    asked: list[str] = []

    class Gzipping(SimpleHTTPRequestHandler):  # a test server: gzip for every answer, whatever was asked
        def do_GET(self) -> None:
            asked.append(self.headers.get("Accept-Encoding", ""))
            f = self.translate_path(self.path)
            try:
                body = gzip.compress(open(f, "rb").read())  # noqa: SIM115
            except OSError:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Gzipping, directory=str(tmp_path / "tiles")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        r = qrng("audit", "verify", url, "--key", str(pub))
        assert r.returncode == 0, r.stdout + r.stderr
        r = qrng("audit", "prove", url, "--index", "310", "--key", str(pub), "--out", str(tmp_path / "p.proof"))
        assert r.returncode == 0, r.stderr
    finally:
        httpd.shutdown()
    assert asked and all(a == "gzip, identity" for a in asked)
