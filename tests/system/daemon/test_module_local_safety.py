"""The C module against a hostile local environment (issue 20, low): a socket squatted by another user in a
shared folder gets no request (the daemon's peer must be root, this process's user, or the owner of the socket's
folder); a configuration file that is a FIFO or a device is refused at C_Initialize at once (it would block, or
be read as configuration)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .test_module_daemon_mode import client_env, qrngd_module  # noqa: F401 - the module fixture

NOBODY = 65534


class Squatter:
    """Another user (nobody) binding a socket at the path qrngd or the module will use, in a shared folder (mode
    1777, like /tmp); ``watch``: accept one connection and report whether any request reached it."""

    def __init__(self, watch: bool) -> None:
        self.shared = Path(tempfile.mkdtemp(prefix="qrng-shared-"))
        self.shared.chmod(0o1777)
        self.sock = self.shared / "qrngd.sock"
        self.r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(self.r)
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                srv = socket.socket(socket.AF_UNIX)
                srv.bind(str(self.sock))
                srv.listen(4)
                os.write(w, b"r")
                if watch:
                    srv.settimeout(10)
                    conn, _ = srv.accept()
                    conn.settimeout(3)
                    try:
                        got = conn.recv(64)
                    except OSError:
                        got = b""
                    os.write(w, b"G" if got else b"N")  # whether any request reached the squatter
                else:
                    time.sleep(8)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        assert os.read(self.r, 1) == b"r"

    def verdict(self) -> bytes:
        """b"N": a connection came and no request reached the squatter; b"G": one did; b"": no connection came."""
        return os.read(self.r, 1)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.r)
        shutil.rmtree(self.shared, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the squatter is another user (nobody): needs root to start it")
def test_a_squatted_socket_gets_no_request(qrngd_module):  # noqa: F811
    squat = Squatter(watch=True)
    try:
        out = subprocess.run(["pkcs11-tool", "--module", str(qrngd_module), "--generate-random", "16"],
                             capture_output=True, env=client_env(squat.sock), timeout=60)
        assert out.returncode != 0 and len(out.stdout) == 0  # fail closed: no bytes
        assert squat.verdict() == b"N", "a request reached the squatter (or the module never connected)"
    finally:
        squat.close()

@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_configuration_that_is_not_a_regular_file_is_refused(qrngd_module, tmp_path, kind):  # noqa: F811
    conf = tmp_path / "client.conf"
    if kind == "fifo":
        os.mkfifo(conf)
    else:
        conf = Path("/dev/zero")
    t = time.monotonic()
    out = subprocess.run(["pkcs11-tool", "--module", str(qrngd_module), "-I"], capture_output=True, text=True,
                         env=client_env(tmp_path / "qrngd.sock", conf), timeout=30)
    assert out.returncode != 0 and f"{conf}: not a regular file" in out.stderr, out.stderr
    assert time.monotonic() - t < 5  # refused at once, not blocked on the FIFO


HEALTH = textwrap.dedent("""
    import json, sys
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    s = lib.openSession(lib.getSlotList()[0])
    h = s.findObjects([(PyKCS11.CKA_LABEL, "qrng health report")])
    print(bytes(s.getAttributeValue(h[0], [PyKCS11.CKA_VALUE])[0]).decode())
""")


def _hostile_daemon(path: Path, stop: threading.Event) -> None:
    """A FAKE daemon, named as such: a failure a real qrngd cannot produce (a hostile or broken daemon whose STATUS
    text tries to close the health object early and override the module's own fields). It answers HELLO, SEED
    with zeros and STATUS with the injection."""
    import struct
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(0.2)
    inject = b'{"state": "healthy"}, "state": "operational", "error": null, "x": {"y": 1}'
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except OSError:
            continue
        conn.settimeout(2)
        try:
            while True:
                head = conn.recv(8)
                if len(head) < 8:
                    break
                op, n = head[3], struct.unpack("<I", head[4:])[0]
                body = conn.recv(n) if n else b""
                if op == 1:
                    answer = b'{"daemon": "qrngd", "protocol": 1, "max_seed": 4096, "simulator": true}'
                elif op == 2:
                    answer = bytes(struct.unpack("<I", body)[0])
                else:
                    answer = inject
                conn.sendall(b"QR\x01\x00" + struct.pack("<I", len(answer)) + answer)
        except OSError:
            pass
        finally:
            conn.close()
    srv.close()


def test_the_daemons_text_cannot_override_the_health_objects_fields(qrngd_module, tmp_path):  # noqa: F811
    """Issue 20 (low): the daemon's STATUS answer was spliced into the health object if it merely began with '{'
    and ended with '}'; text closing the object early overrode the module's own "state"."""
    sock = tmp_path / "fake.sock"
    stop_it = threading.Event()
    t = threading.Thread(target=_hostile_daemon, args=(sock, stop_it), daemon=True)
    t.start()
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        out = subprocess.run([sys.executable, "-c", HEALTH, str(qrngd_module)], capture_output=True, text=True,
                             env=client_env(sock), timeout=60)
        assert out.returncode == 0, out.stderr
        health = json.loads(out.stdout)
        assert health["daemon"] == {"state": "unreachable"} and "x" not in health, health
    finally:
        stop_it.set()
        t.join(timeout=5)


def test_a_short_lived_consumer_that_fell_back_leaves_a_trace(qrngd_module, tmp_path):  # noqa: F811
    """Issue 20 (low): with `fallback = os` and no daemon, a consumer that ran and exited before qrngd came back
    left no trace that its bytes came from the OS; C_Finalize says so on stderr."""
    conf = tmp_path / "client.conf"
    conf.write_text("fallback = os\n")
    out = subprocess.run(["pkcs11-tool", "--module", str(qrngd_module), "--generate-random", "16"],
                         capture_output=True, env=client_env(tmp_path / "absent.sock", conf), timeout=60)
    assert out.returncode == 0 and len(out.stdout) == 16
    assert b"seed(s) came from the named fallback (os)" in out.stderr, out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the squatter is another user (nobody): needs root to start it")
def test_the_daemon_names_a_squatter_of_its_socket(tmp_path):
    """Issue 20 (low): qrngd said "another qrngd is serving" when another user's process held its socket path."""
    squat = Squatter(watch=False)
    try:
        cfg = tmp_path / "sim.yaml"
        cfg.write_text("version: 1\nsource: {type: simulator}\n")
        run = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket",
                              str(squat.sock)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and f"a process of uid {NOBODY} answers on this socket" in run.stderr, run.stderr
    finally:
        squat.close()
