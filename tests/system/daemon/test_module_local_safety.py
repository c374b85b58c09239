"""The C module against a hostile local environment (issue 20, low): a socket squatted by another user in a
shared folder gets no request (the daemon's peer must be root, this process's user, or the owner of the socket's
folder); a configuration file that is a FIFO or a device is refused at C_Initialize at once (it would block, or
be read as configuration)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .test_module_daemon_mode import client_env, qrngd_module  # noqa: F401 - the module fixture

NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="the squatter is another user (nobody): needs root to start it")
def test_a_squatted_socket_gets_no_request(qrngd_module):  # noqa: F811
    shared = Path(tempfile.mkdtemp(prefix="qrng-shared-"))
    shared.chmod(0o1777)  # like /tmp: anyone may create a socket here
    sock = shared / "qrngd.sock"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the squatter: another user binds the path the module will use
        code = 1
        try:
            os.close(r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            srv = socket.socket(socket.AF_UNIX)
            srv.bind(str(sock))
            srv.listen(4)
            os.write(w, b"r")
            srv.settimeout(10)
            conn, _ = srv.accept()
            conn.settimeout(3)
            try:
                got = conn.recv(64)
            except OSError:
                got = b""
            os.write(w, b"G" if got else b"N")  # whether any request reached the squatter
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b"r"
        out = subprocess.run(["pkcs11-tool", "--module", str(qrngd_module), "--generate-random", "16"],
                             capture_output=True, env=client_env(sock), timeout=60)
        assert out.returncode != 0 and len(out.stdout) == 0  # fail closed: no bytes
        assert os.read(r, 1) == b"N", "a request reached the squatter"
    finally:
        os.waitpid(pid, 0)
        os.close(r)
        shutil.rmtree(shared, ignore_errors=True)


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
