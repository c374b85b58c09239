"""tlog-witness benchmark (issue 14), one run, one table (`make bench`): add-checkpoint requests per second that a
`qrng witness serve` process answers with 200 on loopback, its state made durable (fsync) before each answer
(target: at least 200/s). Clients: 4 threads on keep-alive connections, each submitting checkpoints of its own log
(one log per thread: a witness serialises one log's requests, as the spec's atomic check-and-commit requires),
every request extending that log by one entry with a real consistency proof. Side by side: the same requests
against a witness whose state folder is on /dev/shm (no disk: what the fsyncs cost)."""

from __future__ import annotations

import base64
import http.client
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.netwait: loopback helpers, not shipped
from _table import print_table

from tests.netwait import free_port, wait_for_port
from transparency.merkle import TreeLevels, leaf_hash
from transparency.note import ALG_COSIGNATURE_V1, Checkpoint, generate_ed25519, load_ed25519_signer, sign_note

THREADS = 4
PER_THREAD = 150



def requests_for(origin: str, priv: str, n: int) -> list[bytes]:
    """n add-checkpoint bodies for a log growing by one entry each time (old size = the previous one)."""
    signer = load_ed25519_signer(priv)
    leaves = [leaf_hash(f"{origin} entry {i}".encode()) for i in range(n)]
    tree = TreeLevels(leaves)
    out = []
    for size in range(1, n + 1):
        note = sign_note(Checkpoint(origin, size, tree.root(size)).text(), [signer])
        proof = tree.consistency_proof(size - 1, size) if size > 1 else []
        out.append((f"old {size - 1}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n"
                    + note).encode())
    return out


def run(state: Path, tmp: Path) -> float:
    logs = [generate_ed25519(f"bench.example/log-{i}") for i in range(THREADS)]
    priv_w, _ = generate_ed25519("witness.example/bench")
    key = tmp / "w.key"
    key.write_text(priv_w + "\n")
    assert load_ed25519_signer(priv_w, ALG_COSIGNATURE_V1)
    port = free_port()
    cmd = [sys.executable, "-m", "qrng_cli", "witness", "serve", "--listen", f"127.0.0.1:{port}", "--key", str(key),
           "--state", str(state)]
    for _, vkey in logs:
        cmd += ["--log", vkey]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 20, alive=lambda: p.poll() is None)
        bodies = [requests_for(f"bench.example/log-{i}", priv, PER_THREAD) for i, (priv, _) in enumerate(logs)]
        failures: list[str] = []

        def client(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for body in bodies[i]:
                conn.request("POST", "/add-checkpoint", body=body)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(f"{r.status}")
            conn.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        assert not failures, failures[:5]
        return THREADS * PER_THREAD / elapsed
    finally:
        p.terminate()
        p.wait()


def main() -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        disk = run(tmp / "state", tmp)
    shm_root = Path("/dev/shm")
    rows = [("add-checkpoint answered 200, state fsync'd before each answer (disk)", f"{disk:,.0f} /s",
             ">= 200 /s")]
    if shm_root.is_dir():
        with tempfile.TemporaryDirectory(dir=shm_root) as s, tempfile.TemporaryDirectory() as t:
            memory = run(Path(s) / "state", Path(t))
        rows.append(("the same, state on /dev/shm (what the fsyncs cost)", f"{memory:,.0f} /s", "comparison"))
    print_table("tlog-witness (issue 14)", rows)


if __name__ == "__main__":
    main()
