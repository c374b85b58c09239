"""The PKCS#11 module in daemon mode (build/libqrng-pkcs11-qrngd.so, C only): consumers in separate processes
(PyKCS11, pkcs11-tool, OpenSSL through pkcs11-provider, Java SunPKCS11) draw from one emulated-USB source
through qrngd; killing the daemon makes them fail closed (CKR_DEVICE_ERROR, the token in error state, no bytes)
and restarting it lets them recover without restarting them; a named fallback is said everywhere; bad
configuration is refused at C_Initialize naming the file, line and key; a forked child never repeats the
parent's bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient

from ..qrng_pkcs11.test_consumers import openssl_conf
from .test_qrngd import start, stop

CKF_ERROR_STATE = 0x01000000

CONSUMER = textwrap.dedent("""
    import json, sys, time
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]; s = lib.openSession(slot)
    def health():
        h = s.findObjects([(PyKCS11.CKA_LABEL, "qrng health report")])
        return json.loads(bytes(s.getAttributeValue(h[0], [PyKCS11.CKA_VALUE])[0]))
    def info():
        t = lib.getTokenInfo(slot)
        return {"model": t.model.strip(), "label": t.label.strip(), "error_state": bool(t.flags & 0x01000000)}
    out = {"first": len(s.generateRandom(1 << 20)), "token": info(), "health": health()}
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                     # the test kills the daemon
    time.sleep(0.2)                          # longer than reseed_ms: the next request asks the daemon
    try:
        out["while_down"] = "served %d" % len(s.generateRandom(4096))
    except PyKCS11.PyKCS11Error as e:
        out["while_down"] = str(e)
    out["token"], out["health"] = info(), health()
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                     # the test restarts it
    t = time.perf_counter()
    while time.perf_counter() - t < 10:
        try:
            out["after"] = len(s.generateRandom(4096)); break
        except PyKCS11.PyKCS11Error:
            time.sleep(0.05)
    out["token"], out["health"] = info(), health()
    print(json.dumps(out), flush=True)
""")


@pytest.fixture(scope="module")
def qrngd_module() -> Path:
    from qrng_pkcs11.build import build_client
    return build_client()


@pytest.fixture()
def daemon_setup(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    src = tmp_path / "usb.yaml"
    src.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\n")
    return src, tmp_path / "qrngd.sock"


def client_env(sock: Path, conf: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QRNG_CONFIG", "QRNG_PKCS11_LOG")}
    env["QRNGD_SOCKET"] = str(sock)
    if conf is not None:
        env["QRNGD_CLIENT_CONF"] = str(conf)
    return env


def run(*cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), capture_output=True, timeout=120, env=env)


def test_no_python_and_no_pipeline_in_the_consumer(qrngd_module):
    """Daemon mode needs neither the interpreter nor the pipeline: the module links libcrypto and the C library
    only (the dynamic loader for thread-local storage)."""
    out = subprocess.run(["readelf", "-d", str(qrngd_module)], capture_output=True, text=True, check=True).stdout
    needed = sorted(line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line)
    assert needed == ["ld-linux-x86-64.so.2", "libc.so.6", "libcrypto.so.3"], needed


@pytest.fixture(scope="module")
def java_prog(tmp_path_factory, qrngd_module):
    from qrng_pkcs11.consumers import prepare_java
    d = prepare_java(tmp_path_factory.mktemp("java-qrngd"))  # qrng_pkcs11/java/QrngRandom.java
    (d / "qrngd.cfg").write_text(f"name = QRNGD\nlibrary = {qrngd_module}\n")
    return d


def test_consumers_fail_closed_and_recover_with_the_daemon(qrngd_module, daemon_setup, java_prog, tmp_path):
    src, sock = daemon_setup
    env = client_env(sock)
    ossl = {**env, "OPENSSL_CONF": str(openssl_conf(tmp_path, qrngd_module))}
    d = start(src, sock)
    p = subprocess.Popen([sys.executable, "-c", CONSUMER, str(qrngd_module)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(p.stdout.readline())
        assert first["first"] == 1 << 20 and first["token"]["model"] == "QRNGD SIMULATOR", first
        assert not first["token"]["error_state"]
        assert first["health"]["mode"] == "daemon" and first["health"]["state"] == "operational", first
        assert first["health"]["daemon"]["state"] == "healthy" and first["health"]["simulator"] is True
        tool = run("pkcs11-tool", "--module", str(qrngd_module), "--generate-random", "64", env=env)
        assert tool.returncode == 0 and len(tool.stdout) == 64, tool.stderr
        rand = run("openssl", "rand", "-hex", "16", env=ossl)
        assert rand.returncode == 0 and len(rand.stdout.strip()) == 32 and rand.stderr == b"", rand.stderr
        java = run("java", "-cp", str(java_prog), "QrngRandom", str(java_prog / "qrngd.cfg"), "64", env=env)
        assert java.returncode == 0 and java.stdout.split()[0] == b"SunPKCS11-QRNGD", java.stderr
        clients = DaemonClient(str(sock), "test").status()["clients"]
        # four consumer processes drew from the one source, each counted under its program's name
        assert {"pkcs11:python", "pkcs11:pkcs11-tool", "pkcs11:openssl", "pkcs11:java"} <= set(clients), clients

        d.kill()
        d.wait()
        p.stdin.write("\n")
        p.stdin.flush()
        down = json.loads(p.stdout.readline())
        assert down["while_down"].startswith("CKR_DEVICE_ERROR") and down["token"]["error_state"], down
        assert down["health"]["state"] == "failed" and "not reachable" in down["health"]["error"], down
        assert down["health"]["daemon"] == {"state": "unreachable"}
        tool = run("pkcs11-tool", "--module", str(qrngd_module), "--generate-random", "64", env=env)
        assert tool.returncode != 0 and tool.stdout == b""  # fail closed: no bytes
        rand = run("openssl", "rand", "-hex", "16", env=ossl)
        assert rand.returncode != 0 and rand.stdout == b""
        java = run("java", "-cp", str(java_prog), "QrngRandom", str(java_prog / "qrngd.cfg"), "64", env=env)
        assert java.returncode != 0 and b"CKR_DEVICE_ERROR" in java.stderr

        d = start(src, sock)
        p.stdin.write("\n")
        p.stdin.flush()
        after = json.loads(p.stdout.readline())
        assert after.get("after") == 4096, after  # recovered without restarting the consumer
        assert not after["token"]["error_state"] and after["health"]["state"] == "operational"
    finally:
        p.kill()
        stop(d) if d.poll() is None else None


FALLBACK = textwrap.dedent("""
    import json, sys
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]; s = lib.openSession(slot)
    n = len(s.generateRandom(4096))
    t = lib.getTokenInfo(slot)
    h = s.findObjects([(PyKCS11.CKA_LABEL, "qrng health report")])
    health = json.loads(bytes(s.getAttributeValue(h[0], [PyKCS11.CKA_VALUE])[0]))
    print(json.dumps({"n": n, "label": t.label.strip(), "model": t.model.strip(),
                      "error_state": bool(t.flags & 0x01000000), "health": health}))
""")


def test_named_fallback_is_said_by_token_and_health_object(qrngd_module, tmp_path):
    """fallback = os: with no daemon the module serves from the OS, and the token label, model and the health
    object say so (never silently); fallback = none (the default) fails closed."""
    sock = tmp_path / "nobody.sock"
    conf = tmp_path / "client.conf"
    conf.write_text("# the operator's policy allows the OS as a named fallback\nfallback = os\n")
    r = run(sys.executable, "-c", FALLBACK, str(qrngd_module), env=client_env(sock, conf))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 4096 and out["model"] == "QRNGD FALLBACK" and "FALLBACK: os" in out["label"], out
    assert not out["error_state"] and out["health"]["state"] == "fallback" and out["health"]["fell_back"] is True
    assert out["health"]["fallback_seeds"] >= 1 and "not reachable" in out["health"]["error"]
    conf.write_text("fallback = none\n")
    r = run(sys.executable, "-c", FALLBACK, str(qrngd_module), env=client_env(sock, conf))
    assert r.returncode != 0 and b"CKR_DEVICE_ERROR" in r.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("sockett = /x\n", "client.conf:1: unknown key"),
    ("\n\nsocket = relative/path\n", "client.conf:3: socket must be an absolute path"),
    ("fallback = urandom\n", "client.conf:1: fallback must be none or os"),
    ("reseed_ms = 1e9\n", "client.conf:1: reseed_ms must be an integer from 1 to 60000"),
    ("reseed_ms = 99999999999999999999999\n", "client.conf:1: reseed_ms must be an integer"),
    ("fallback = os\nfallback = none\n", "client.conf:2: fallback given twice"),
    ("socket /x\n", "client.conf:1: expected `key = value`"),
    ("socket = /x\x00\n", "contains a NUL byte"),
    ("socket = /" + "a" * 200 + "\n", "socket must be at most 107 bytes"),
    (None, "client.conf: cannot read: No such file or directory"),
], ids=["unknown-key", "relative-socket", "bad-fallback", "not-an-integer", "huge-number", "repeated-key",
        "no-equals", "nul-byte", "long-path", "missing-file"])
def test_bad_configuration_is_refused_at_initialize(qrngd_module, tmp_path, text, message):
    conf = tmp_path / "client.conf"
    if text is not None:
        conf.write_bytes(text.encode())
    env = client_env(tmp_path / "q.sock", conf)
    env.pop("QRNGD_SOCKET")
    r = run("pkcs11-tool", "--module", str(qrngd_module), "-I", env=env)
    assert r.returncode != 0 and b"CKR_GENERAL_ERROR" in r.stderr
    assert f"qrng-pkcs11-qrngd: configuration: {conf}".encode() in r.stderr and message.encode() in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr


PREDICTION = textwrap.dedent("""
    import os, sys
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    s = lib.openSession(lib.getSlotList()[0])
    a = bytes(s.generateRandom(32))
    for _ in range(9):
        s.generateRandom(32)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, bytes(s.generateRandom(32))); os._exit(0)
    os.waitpid(pid, 0)
    child, parent = os.read(r, 64), bytes(s.generateRandom(32))
    print(len(child), child != parent, a != parent)
""")


def test_prediction_resistance_and_fork(qrngd_module, daemon_setup, tmp_path):
    """prediction_resistance = yes: every C_GenerateRandom takes a fresh seed from the daemon (SP 800-90A 9.3);
    a forked child gets its own DRBG and connection and never the parent's next bytes."""
    src, sock = daemon_setup
    conf = tmp_path / "client.conf"
    conf.write_text("prediction_resistance = yes\n")
    d = start(src, sock)
    try:
        r = run(sys.executable, "-c", PREDICTION, str(qrngd_module), env=client_env(sock, conf))
        assert r.returncode == 0 and r.stdout.split() == [b"32", b"True", b"True"], r.stderr
        st = DaemonClient(str(sock), "test").status()
        # 12 requests with prediction resistance (10 + one in the child + one in the parent), 48 bytes each
        assert st["clients"]["pkcs11:python"] == 12 * 48, st["clients"]
    finally:
        stop(d)


P11_CLIENT = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
TOKEN_URI = "pkcs11:manufacturer=qrng-ceremony;serial=qrngd"  # stable: the label changes with the state


def test_p11kit_server_remotes_the_daemon_mode_module(qrngd_module, daemon_setup, tmp_path):
    """The other supported way past one host: `p11-kit server` exposes the module in daemon mode on a socket (which
    SSH can forward), and consumers load p11-kit-client.so. They fail closed while qrngd is down and recover when it
    is back, without restarting the p11-kit server or themselves."""
    import time
    src, sock = daemon_setup
    d = start(src, sock)
    p11 = tmp_path / "p11kit.sock"
    server = subprocess.Popen(["p11-kit", "server", "-f", "-n", str(p11), "--provider", str(qrngd_module), TOKEN_URI],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=client_env(sock))
    try:
        for _ in range(100):
            if p11.exists():
                break
            time.sleep(0.05)
        assert p11.exists(), server.stderr.read1().decode() if server.stderr else ""
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={p11}"}
        r = run("pkcs11-tool", "--module", str(P11_CLIENT), "--generate-random", "64", env=env)
        assert r.returncode == 0 and len(r.stdout) == 64, r.stderr
        assert b"QRNGD SIMULATOR" in run("pkcs11-tool", "--module", str(P11_CLIENT), "-L", env=env).stdout
        assert "pkcs11:p11-kit-remote" in DaemonClient(str(sock), "test").status()["clients"]  # the server process
        d.kill()
        d.wait()
        time.sleep(0.2)
        r = run("pkcs11-tool", "--module", str(P11_CLIENT), "--generate-random", "64", env=env)
        assert r.returncode != 0 and r.stdout == b"" and b"Could not generate random" in r.stderr, r.stderr
        d = start(src, sock)
        r = run("pkcs11-tool", "--module", str(P11_CLIENT), "--generate-random", "64", env=env)
        assert r.returncode == 0 and len(r.stdout) == 64, r.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
        stop(d) if d.poll() is None else None
