"""qrngd beyond one host, on loopback: the mutual-TLS endpoint with certificates issued by the project's own
ceremony (ceremonies/qrngd-tls.yaml on SoftHSM2: the CA key in the HSM, the TLS keys' requests made with OpenSSL
and imported), a relay daemon on "another host" taking seeds from it over mutual TLS and serving its own local
consumers (the C module); clients without a certificate, or with one from another CA, are refused and never take
the endpoint down; the relay fails closed when the upstream goes away and recovers when it is back."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from qrngd.client import DaemonClient, DaemonUnavailable
from tests.netwait import free_port

from ..ceremony.conftest import make_workspace
from .test_qrngd import start, stop
from .test_qrngd_operations import until


def openssl_request(folder: Path, name: str, cn: str) -> Path:
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(folder / f"{name}.key"), "-subj", f"/O=Example Trust Services/CN={cn}",
                    "-out", str(folder / f"{name}.csr")], check=True, capture_output=True)
    return folder / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The ceremony's certificates and the two TEST-ONLY TLS keys."""
    ws = make_workspace(tmp_path_factory.mktemp("tls-ceremony"))
    req = ws.dir / "ceremonies" / "qrngd-tls"
    keys = {"server": openssl_request(req, "server", "qrngd.example"),
            "relay": openssl_request(req, "relay-1", "relay-1.example")}
    r = ws.qrng("ceremony", "run", str(ws.script("qrngd-tls.yaml")), "--profile", "filekey", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    out = ws.dir / "out" / "qrngd-tls-2026"
    # the issued certificates are what TLS needs: OpenSSL verifies them for their purpose
    for cert, purpose in (("qrngd-server.pem", "sslserver"), ("relay-1.pem", "sslclient")):
        v = subprocess.run(["openssl", "verify", "-CAfile", str(out / "qrngd-tls-ca.pem"), "-purpose", purpose,
                            str(out / cert)], capture_output=True, text=True)
        assert v.returncode == 0 and ": OK" in v.stdout, v.stderr
    return {"ca": out / "qrngd-tls-ca.pem", "server": out / "qrngd-server.pem", "server_key": keys["server"],
            "relay": out / "relay-1.pem", "relay_key": keys["relay"], "ws": ws}


def test_relay_over_mutual_tls_serves_local_consumers_and_fails_closed(pki, tmp_path):
    src = tmp_path / "sim.yaml"
    src.write_text("version: 1\nsource: {type: simulator}\n")
    port = free_port()
    tls = ["--tls", f"127.0.0.1:{port}", "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
           "--tls-client-ca", str(pki["ca"])]
    a_sock, b_sock = tmp_path / "a.sock", tmp_path / "b.sock"
    a = start(src, a_sock, *tls)
    b = None
    try:
        b = start(None, b_sock, "--upstream", f"127.0.0.1:{port}", "--upstream-cert", str(pki["relay"]),
                  "--upstream-key", str(pki["relay_key"]), "--upstream-ca", str(pki["ca"]),
                  "--upstream-name", "qrngd.example")
        relay = DaemonClient(str(b_sock), "consumer")
        st = relay.status()
        assert st["state"] == "healthy" and st["sources"][0]["name"] == "upstream", st
        assert st["sources"][0]["simulator"] is True  # the upstream's SIMULATOR label travels with its seeds
        assert len(relay.seed(4096)) == 4096
        # a consumer on the relay's host: the C module, through the relay's Unix socket
        from qrng_pkcs11.build import build_client
        env = {**os.environ, "QRNGD_SOCKET": str(b_sock)}
        tool = subprocess.run(["pkcs11-tool", "--module", str(build_client()), "--generate-random", "64"],
                              capture_output=True, env=env, timeout=60)
        assert tool.returncode == 0 and len(tool.stdout) == 64, tool.stderr
        clients = DaemonClient(str(a_sock), "test").status()["clients"]
        relayed = [c for c in clients if c.startswith("tls:relay-1.example/")]
        assert relayed and clients[relayed[0]] >= 4096, clients  # attributable to the certificate's CN

        # hostile and unauthorised clients: no certificate, another CA's certificate, plain bytes
        no_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises((ssl.SSLError, OSError)), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                no_cert.wrap_socket(raw, server_hostname="qrngd.example") as s:
            s.sendall(b"QR\x01\x03\x00\x00\x00\x00")  # STATUS
            if not s.recv(8):
                raise OSError("closed without an answer")
        with pytest.raises(DaemonUnavailable):
            DaemonClient(f"127.0.0.1:{port}", "intruder", tls=_other_ca_context(tmp_path, pki["ca"]),
                         server_name="qrngd.example").status()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            raw.settimeout(5)
            with contextlib.suppress(OSError):
                raw.recv(100)
        assert len(relay.seed(48)) == 48  # still serving
        assert DaemonClient(str(a_sock), "test").status()["state"] == "healthy"

        # the upstream goes away: the relay fails closed; it comes back: the relay serves again
        stop(a)
        until(lambda: relay.status()["state"] == "unhealthy", 15)
        with pytest.raises(DaemonUnavailable, match="unhealthy"):
            relay.seed(48)
        a = start(src, a_sock, *tls)
        until(lambda: relay.status()["state"] == "healthy", 15)
        assert len(relay.seed(48)) == 48
    finally:
        stop(a) if a.poll() is None else None
        if b is not None and b.poll() is None:
            stop(b)


def _other_ca_context(tmp_path: Path, trusted_ca: Path) -> ssl.SSLContext:
    """A client certificate from a CA the daemon does not trust (made with OpenSSL)."""
    d = tmp_path / "other-ca"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "ca.key"), "-subj", "/CN=Other CA", "-days", "2", "-out", str(d / "ca.pem")],
                   check=True, capture_output=True)
    key = openssl_request(d, "intruder", "relay-1.example")
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "intruder.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
                    str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(d / "intruder.pem")],
                   check=True, capture_output=True)
    from qrngd.tls import client_context
    return client_context(d / "intruder.pem", key, trusted_ca)


def test_bad_tls_options_are_refused_before_serving(pki, tmp_path):
    src = tmp_path / "sim.yaml"
    src.write_text("version: 1\nsource: {type: simulator}\n")
    for extra, message in (
            (["--tls", "127.0.0.1:7464"], "--tls needs --tls-cert"),
            (["--tls", "localhost", "--tls-cert", str(pki["server"])], "expected HOST:PORT"),
            (["--tls", "127.0.0.1:7464", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", "x",
              "--tls-client-ca", "y"], "nope.pem: no such file"),
            (["--upstream", "127.0.0.1:7464", "--upstream-cert", str(pki["relay"])],
             "--upstream needs --upstream-key")):
        r = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(src), "--socket",
                            str(tmp_path / "x.sock"), *extra], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
