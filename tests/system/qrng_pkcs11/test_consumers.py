"""Real consumers load the built module and get pipeline bytes; a simulator fault makes each one fail.

pkcs11-tool (OpenSC), p11tool (GnuTLS), python-pkcs11 (takes bits), PyKCS11, Java 17 SunPKCS11,
OpenSSL 3 through pkcs11-provider, p11-kit (module registration and remoting over a Unix socket)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import served_by_module

TOKEN_URI = "pkcs11:token=qrng%20SIM-0001"
OSSL_PROVIDER = Path("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so")
P11_CLIENT = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; scripts/setup.sh installs it")


def run(*cmd: str, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), capture_output=True, timeout=120, **kw)


# --- pkcs11-tool ---------------------------------------------------------------------------------------
def test_pkcs11_tool(module, healthy):
    need("pkcs11-tool")
    info = run("pkcs11-tool", "--module", str(module), "-I", "-L", "-M")
    out = info.stdout.decode()
    assert info.returncode == 0 and "qrng-ceremony" in out and "QRNG-SIMULATOR" in out and "rng" in out
    r = run("pkcs11-tool", "--module", str(module), "--generate-random", "64")
    assert r.returncode == 0 and len(r.stdout) == 64
    t = run("pkcs11-tool", "--module", str(module), "--test")
    assert t.returncode == 0 and b"C_SeedRandom() and C_GenerateRandom():\n  seems to be OK" in t.stdout
    assert served_by_module(healthy)


def test_pkcs11_tool_fault(module, faulty):
    r = run("pkcs11-tool", "--module", str(module), "--generate-random", "32")
    assert r.returncode != 0 and r.stdout == b""
    t = run("pkcs11-tool", "--module", str(module), "-T")
    assert b"other flags=0x1000000" in t.stdout  # CKF_ERROR_STATE


# --- GnuTLS ------------------------------------------------------------------------------------------------
def test_p11tool(module, healthy):
    need("p11tool")
    lst = run("p11tool", "--provider", str(module), "--list-tokens")
    assert b"Model: QRNG-SIMULATOR" in lst.stdout and b"Flags: RNG" in lst.stdout
    r = run("p11tool", "--provider", str(module), "--generate-random=48", TOKEN_URI)
    assert r.returncode == 0 and len(r.stdout) == 48 and served_by_module(healthy)


def test_p11tool_fault(module, faulty):
    r = run("p11tool", "--provider", str(module), "--generate-random=48", TOKEN_URI)
    assert r.returncode != 0 and r.stdout == b"" and b"error in device" in r.stderr.lower()


# --- Python consumers (subprocesses: each host process starts its own module) --------------------------------
PY_PKCS11 = """
import sys, pkcs11
lib = pkcs11.lib(sys.argv[1])
tok = lib.get_token()
with tok.open() as s:
    a = s.generate_random(256)           # python-pkcs11 takes bits
    s.seed_random(b"caller entropy")
    b = s.generate_random(8 * 1000)
    assert len(a) == 32 and len(b) == 1000 and a != b[:32]
    print(tok.model, a.hex())
"""

PYKCS11 = """
import sys, PyKCS11
p = PyKCS11.PyKCS11Lib(); p.load(sys.argv[1])
slot = p.getSlotList(tokenPresent=True)[0]
s = p.openSession(slot)
s.seedRandom([1, 2, 3])
r = bytes(s.generateRandom(100))
assert len(r) == 100
print(p.getTokenInfo(slot).model.strip(), r.hex())
"""


@pytest.mark.parametrize("script", [PY_PKCS11, PYKCS11], ids=["python-pkcs11", "PyKCS11"])
def test_python_consumers(module, healthy, script):
    r = run(sys.executable, "-c", script, str(module))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("QRNG-SIMULATOR") and served_by_module(healthy)


@pytest.mark.parametrize("script", [PY_PKCS11, PYKCS11], ids=["python-pkcs11", "PyKCS11"])
def test_python_consumers_fault(module, faulty, script):
    r = run(sys.executable, "-c", script, str(module))
    assert r.returncode != 0
    assert b"DeviceError" in r.stderr or b"CKR_DEVICE_ERROR" in r.stderr


# --- Java 17 SunPKCS11 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def java_prog(tmp_path_factory, module):
    need("javac")
    from qrng_pkcs11.consumers import prepare_java
    d = prepare_java(tmp_path_factory.mktemp("java"))  # qrng_pkcs11/java/QrngRandom.java
    (d / "qrng.cfg").write_text(f"name = QRNG\nlibrary = {module}\n")
    return d


def test_java_sunpkcs11(java_prog, healthy):
    r = run("java", "-cp", str(java_prog), "QrngRandom", str(java_prog / "qrng.cfg"), "64")
    out = r.stdout.decode().split()
    assert r.returncode == 0, r.stderr.decode()
    assert out[0] == "SunPKCS11-QRNG" and out[1] == "PKCS11" and len(out[2]) == 128
    assert served_by_module(healthy)


def test_java_sunpkcs11_fault(java_prog, faulty):
    r = run("java", "-cp", str(java_prog), "QrngRandom", str(java_prog / "qrng.cfg"), "64")
    assert r.returncode != 0 and b"CKR_DEVICE_ERROR" in r.stderr


# --- OpenSSL 3 through pkcs11-provider --------------------------------------------------------------------------
def openssl_conf(tmp_path: Path, module: Path) -> Path:
    if not OSSL_PROVIDER.exists():
        pytest.fail("pkcs11-provider (bookworm-backports) is not installed; scripts/setup.sh installs it")
    from qrng_pkcs11.openssl_conf import openssl_rand_conf
    conf = tmp_path / "openssl.cnf"
    conf.write_text(openssl_rand_conf(module, OSSL_PROVIDER))
    return conf


def test_openssl_rand(module, healthy, tmp_path):
    conf = openssl_conf(tmp_path, module)
    r = run("openssl", "rand", "-out", str(tmp_path / "r.bin"), "100000",
            env={**os.environ, "OPENSSL_CONF": str(conf)})
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "r.bin").stat().st_size == 100000 and served_by_module(healthy)


@pytest.mark.parametrize("attested", [False, True], ids=["plain", "with-attestation-certificate"])
def test_openssl_rand_loads_the_module_once_and_quietly(module, healthy, tmp_path, attested, monkeypatch):
    """Regression (issue 10 item 11): with OPENSSL_CONF pointing at pkcs11-provider, the module's embedded Python
    imported cryptography, whose OpenSSL read OPENSSL_CONF and loaded this module again from inside our own
    C_GetTokenInfo: a false device error on every openssl command and leaked sessions. With an attestation
    certificate the module does import cryptography (for the certificate object): still once and quietly."""
    if attested:
        from qrng.attestation.statement import init_simulator
        paths = init_simulator(tmp_path / "att")
        cfg = tmp_path / "attested.yaml"
        cfg.write_text(f"version: 1\nsource: {{type: simulator}}\nattestation: {{certificate: {paths['certificate']}, "
                       f"key: {paths['key']}}}\n")
        monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    conf = openssl_conf(tmp_path, module)
    r = run("openssl", "rand", "-hex", "16", env={**os.environ, "OPENSSL_CONF": str(conf)})
    assert r.returncode == 0 and len(r.stdout.strip()) == 32, r.stderr.decode()
    assert r.stderr == b""
    calls = healthy.read_text().splitlines()
    assert sum(" C_Initialize -> " in c for c in calls) == 1
    assert not [c for c in calls if "-> CKR_OK" not in c], calls
    opened = sum(" C_OpenSession -> CKR_OK" in c for c in calls)
    assert opened == sum(" C_CloseSession -> CKR_OK" in c for c in calls) or " C_Finalize -> CKR_OK" in calls[-1]


def test_openssl_rand_fault(module, faulty, tmp_path):
    conf = openssl_conf(tmp_path, module)
    r = run("openssl", "rand", "-hex", "32", env={**os.environ, "OPENSSL_CONF": str(conf)})
    assert r.returncode != 0 and r.stdout == b""


# --- p11-kit ---------------------------------------------------------------------------------------------------------
def test_p11kit_lists_registered_module(module, healthy):
    """After `make install-module` (explicit, system-wide; never done by set-up or tests) p11-kit lists the module.
    p11-kit ignores per-user module folders for root, so there is no private configuration to test instead; the
    remoting test below covers p11-kit with --provider."""
    need("p11-kit")
    reg = Path("/etc/pkcs11/modules/qrng-ceremony.module")
    if not reg.exists() or f"module: {module}" not in reg.read_text():
        pytest.skip("this checkout's module is not registered system-wide (run `make install-module` to test it)")
    r = run("p11-kit", "list-modules")
    out = r.stdout.decode()
    assert f"qrng-ceremony: {module}" in out and "model: QRNG-SIMULATOR" in out


def test_p11kit_server_remoting(module, healthy, tmp_path):
    """p11-kit server exposes the module on a Unix socket; a client loading p11-kit-client.so gets bytes."""
    need("p11-kit")
    sock = tmp_path / "qrng.sock"
    server = subprocess.Popen(["p11-kit", "server", "-f", "-n", str(sock), "--provider", str(module), TOKEN_URI],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        assert sock.exists(), server.stderr.read1().decode() if server.stderr else ""
        client_env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={sock}"}
        r = run("pkcs11-tool", "--module", str(P11_CLIENT), "--generate-random", "64", env=client_env)
        assert r.returncode == 0 and len(r.stdout) == 64, r.stderr.decode()
        lst = run("pkcs11-tool", "--module", str(P11_CLIENT), "-L", env=client_env)
        assert b"QRNG-SIMULATOR" in lst.stdout
        assert served_by_module(healthy)  # the server process called our module
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- token objects and a missing device, through the built module ------------------------------------------------
def test_attestation_certificate_is_a_token_object(module, tmp_path, monkeypatch):
    from qrng.attestation.statement import init_simulator
    paths = init_simulator(tmp_path / "att")
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: simulator}}\n"
                   f"attestation: {{certificate: {paths['certificate']}, key: {paths['key']}}}\n")
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    r = run("pkcs11-tool", "--module", str(module), "-O", "--type", "cert")
    assert r.returncode == 0 and b"qrng device attestation" in r.stdout
    der = tmp_path / "cert.der"
    rd = run("pkcs11-tool", "--module", str(module), "--read-object", "--type", "cert", "--label",
             "qrng device attestation", "-o", str(der))
    assert rd.returncode == 0
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der.read_bytes())
    assert "TEST ONLY" in cert.subject.rfc4514_string()


CERT_ATTRIBUTES = textwrap.dedent("""
    import json, sys
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    token = pkcs11.lib(sys.argv[1]).get_slots()[0].get_token()
    with token.open() as s:
        (cert,) = s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        names = ["VALUE", "SUBJECT", "ISSUER", "SERIAL_NUMBER", "ID", "CHECK_VALUE", "LABEL"]
        print(json.dumps({n: bytes(cert[getattr(Attribute, n)]).hex() if n != "LABEL" else cert[Attribute.LABEL]
                          for n in names}))
""")


def test_certificate_object_attributes_are_the_certificates_own(module, tmp_path, monkeypatch):
    """Since issue 21 the C token core parses the certificate (OpenSSL) where the Python token used cryptography:
    every attribute of PKCS#11 v2.40 4.6.3 it shows is checked against cryptography's reading of the same DER."""
    import hashlib
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from qrng.attestation.statement import init_simulator
    paths = init_simulator(tmp_path / "att")
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: simulator}}\n"
                   f"attestation: {{certificate: {paths['certificate']}, key: {paths['key']}}}\n")
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    r = run(sys.executable, "-c", CERT_ATTRIBUTES, str(module))
    assert r.returncode == 0, r.stderr.decode()
    got = {k: v if k == "LABEL" else bytes.fromhex(v) for k, v in json.loads(r.stdout).items()}
    cert = x509.load_pem_x509_certificates(Path(paths["certificate"]).read_bytes())[0]
    der = cert.public_bytes(Encoding.DER)
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    sha1 = hashlib.sha1(der).digest()
    assert got == {"VALUE": der, "SUBJECT": cert.subject.public_bytes(), "ISSUER": cert.issuer.public_bytes(),
                   "SERIAL_NUMBER": bytes([2, len(serial)]) + serial, "ID": sha1[:8], "CHECK_VALUE": sha1[:3],
                   "LABEL": "qrng device attestation"}


def test_missing_device_means_no_token_present(module, tmp_path, monkeypatch):
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text("version: 1\nsource: {type: device, path: /dev/qrng-not-plugged-in, claimed_min_entropy: 6}\n")
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    script = ("import sys, pkcs11\nlib = pkcs11.lib(sys.argv[1])\nslot = lib.get_slots()[0]\n"
              "print('present' if slot.flags & pkcs11.SlotFlag.TOKEN_PRESENT else 'absent')\n"
              "try:\n    slot.get_token()\nexcept Exception as e:\n    print(type(e).__name__)\n")
    r = run(sys.executable, "-c", script, str(module))
    out = r.stdout.decode()
    assert "absent" in out or "TokenNotPresent" in out, out + r.stderr.decode()


def test_bad_configuration_is_explained(module, tmp_path, monkeypatch):
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text("version: 1\ndrbg: {type: des}\n")
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    r = run("pkcs11-tool", "--module", str(module), "-I")
    assert r.returncode != 0 and b"drbg.type must be one of ctr_aes256, hmac_sha256" in r.stderr


THREADED = textwrap.dedent("""
    import sys, threading, time
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]
    errors, counts = [], []
    def work(i):
        try:
            s = lib.openSession(slot)
            n, end = 0, time.time() + 2
            while time.time() < end:
                s.generateRandom(32 if i % 2 else 70000)  # from the buffer, and through the pipeline
                n += 1
            s.closeSession()
            counts.append(n)
        except Exception as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(len(counts), min(counts) if counts else 0, errors)
""")


def test_threaded_pykcs11_consumer_never_deadlocks(module, healthy):
    """Regression (issue 21): PyKCS11 calls the module holding the GIL. A thread waiting for the token lock held
    it while the lock's holder, inside the Python backend, waited for the GIL: six threads hung for good. The
    module now lets the GIL go while it waits for its lock."""
    r = run(sys.executable, "-c", THREADED, str(module))
    assert r.returncode == 0, r.stderr.decode()
    threads, fewest, errors = r.stdout.decode().split(" ", 2)
    assert (threads, errors.strip()) == ("6", "[]") and int(fewest) > 0
