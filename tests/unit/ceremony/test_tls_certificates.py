"""ceremonies/qrngd-tls.yaml: certificates for qrngd's mutual-TLS endpoint. Requests made outside the HSM are
checked by the plan before any HSM is touched (path, signature, subject, key allowed); TLS profiles carry their
extended key usage; names are checked as pkilint will. Pure: CSRs are made in memory, no HSM."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ceremony.errors import PolicyViolation, ScriptError
from ceremony.loader import load_policy, load_profile, load_script
from ceremony.plan import make_plan

from .conftest import PlanWorkspace as Workspace

ROOT = Path(__file__).resolve().parents[3]
TLS = (ROOT / "ceremonies" / "qrngd-tls.yaml").read_text()


def request(path: Path, cn: str, key=None, o: str = "Example Trust Services") -> None:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))


@pytest.fixture()
def tls_ws(ws: Workspace) -> Workspace:
    folder = ws.dir / "ceremonies" / "qrngd-tls"
    request(folder / "server.csr", "qrngd.example")
    request(folder / "relay-1.csr", "relay-1.example")
    return ws


def plan(ws: Workspace, text: str):
    p = ws.script("t.yaml")
    p.write_text(text)
    s = load_script(p)
    return make_plan(s, load_policy(s.policy), load_profile(s.profiles, "filekey"))


def test_the_example_plan_is_valid(tls_ws: Workspace):
    pl = plan(tls_ws, TLS)
    assert [s.type for s in pl.steps].count("import_csr") == 2
    assert pl.policy.cert_profiles["tls_server"].extended_key_usage == ("server_auth",)


def test_a_tampered_request_is_refused_before_the_hsm(tls_ws: Workspace):
    csr = tls_ws.dir / "ceremonies" / "qrngd-tls" / "server.csr"
    der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(serialization.Encoding.DER)
    csr.write_bytes(der[:-8] + bytes(8))  # the signature's last bytes
    with pytest.raises(PolicyViolation) as exc:
        plan(tls_ws, TLS)
    assert any("steps[5] (server-csr).file" in v and ("does not verify" in v or "not a PKCS#10" in v)
               for v in exc.value.violations), exc.value.violations


def _link_folder(d):
    """The script's CSR folder replaced by a link to a folder outside it that holds the same request."""
    import shutil
    outside = d.parent.parent / "outside-csrs"
    shutil.copytree(d, outside)
    shutil.rmtree(d)
    d.symlink_to(outside, target_is_directory=True)


@pytest.mark.parametrize("change,phrase", [
    (lambda d: request(d / "server.csr", "other.example"),
     "steps[5] (server-csr).subject: the request's subject is CN=other.example, O=Example Trust Services, not"),
    (lambda d: request(d / "server.csr", "qrngd.example", key=rsa.generate_private_key(65537, 2048)),
     "steps[5] (server-csr).file: the request's key (rsa 2048) is not allowed by policy rehearsal"),
    (lambda d: (d / "server.csr").unlink(), "steps[5] (server-csr).file: qrngd-tls/server.csr: no such regular file"),
    (lambda d: (d / "server.csr").write_bytes(b"\xff\xfe not a request"), "not a PKCS#10 certificate signing request"),
    (lambda d: ((d / "server.csr").unlink(), (d / "server.csr").symlink_to("/etc/passwd")),
     "reached without a symbolic link"),
    (lambda d: _link_folder(d), "reached without a symbolic link"),  # issue 20: a linked folder brings it from outside
])
def test_request_violations(tls_ws: Workspace, change, phrase):
    change(tls_ws.dir / "ceremonies" / "qrngd-tls")
    with pytest.raises(PolicyViolation) as exc:
        plan(tls_ws, TLS)
    assert any(phrase in v for v in exc.value.violations), exc.value.violations


@pytest.mark.parametrize("old,new,phrase", [
    ("file: qrngd-tls/server.csr", "file: ../../etc/server.csr", "steps[5].file must be a relative path"),
    ("file: qrngd-tls/server.csr", "file: /etc/server.csr", "steps[5].file must be a relative path"),
    ("dns: [qrngd.example]", "dns: [localhost]", "steps[6].subject_alt_names.dns[0] 'localhost' is not a fully"),
    ("dns: [qrngd.example]", "dns: ['bad_name.example']", "is not a DNS name"),
    ('ip: [127.0.0.1, "::1"]', "ip: [127.0.0.300]", "steps[6].subject_alt_names.ip[0] '127.0.0.300' is not an"),
    ('subject_alt_names: {dns: [qrngd.example], ip: [127.0.0.1, "::1"]}', "subject_alt_names: {}",
     "steps[6].subject_alt_names needs at least one dns or ip name"),
])
def test_script_errors(tls_ws: Workspace, old: str, new: str, phrase: str):
    assert old in TLS
    with pytest.raises(ScriptError) as exc:
        plan(tls_ws, TLS.replace(old, new))
    assert phrase in str(exc.value), str(exc.value)


def test_a_server_certificate_needs_its_names(tls_ws: Workspace):
    text = TLS.replace('    subject_alt_names: {dns: [qrngd.example], ip: [127.0.0.1, "::1"]}\n', "")
    with pytest.raises(PolicyViolation) as exc:
        plan(tls_ws, text)
    assert any("steps[6] (server-cert).subject_alt_names: a TLS server certificate (profile tls_server) needs" in v
               for v in exc.value.violations)


def test_policy_extended_key_usage_is_checked(tls_ws: Workspace):
    import yaml
    pol = tls_ws.dir / "policies" / "rehearsal.yaml"
    doc = yaml.safe_load(pol.read_text())
    doc["certificates"]["tls_server"]["extended_key_usage"] = ["code_signing"]
    pol.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match=r"tls_server.extended_key_usage\[0\].*unknown usage 'code_signing'"):
        plan(tls_ws, TLS)
    doc["certificates"]["tls_server"]["extended_key_usage"] = ["server_auth"]
    doc["certificates"]["root_ca"]["extended_key_usage"] = ["server_auth"]
    pol.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match="is for end-entity profiles"):
        plan(tls_ws, TLS)
