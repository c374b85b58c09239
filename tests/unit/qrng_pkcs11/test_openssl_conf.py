"""The shipped OpenSSL configurations (contrib/openssl) and `qrng openssl-config` say the same thing: every section
and key of the printed file, with the module path of the installation, is in the shipped files."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from qrng_pkcs11.openssl_conf import openssl_rand_conf

ROOT = Path(__file__).resolve().parents[3]


def _parse(text: str) -> dict[str, dict[str, str]]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string("[top]\n" + text)
    return {s: dict(cp[s]) for s in cp.sections()}


@pytest.mark.parametrize(("name", "module"), [
    ("qrng-rand-qrngd.cnf", "/usr/lib/x86_64-linux-gnu/pkcs11/libqrng-pkcs11-qrngd.so"),
    ("qrng-rand-inprocess.cnf", "/usr/lib/x86_64-linux-gnu/pkcs11/libqrng-pkcs11.so"),
])
def test_shipped_files_match_the_generator(name, module):
    shipped = _parse((ROOT / "contrib" / "openssl" / name).read_text())
    assert shipped == _parse(openssl_rand_conf(module))
    assert shipped["pkcs11_sect"]["pkcs11-module-load-behavior"] == "early"
    assert shipped["random_sect"]["random"] == "PKCS11-RAND"


@pytest.mark.parametrize("path", ["/tmp/x.so\nrandom = DEFAULT", "/tmp/x#.so", "/tmp/$ENV::X.so", "/nonexistent.so"])
def test_openssl_config_refuses_a_module_path_it_cannot_write_safely(path, capsys):
    """A module path becomes one value line of OpenSSL's configuration: a newline or '#' would add or cut lines."""
    import qrng_cli
    assert qrng_cli.main(["openssl-config", "--module", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--module" in err and "Traceback" not in err

