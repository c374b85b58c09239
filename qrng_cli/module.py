"""``qrng module-path`` and ``qrng openssl-config``: where this installation's PKCS#11 modules are, and an OpenSSL 3
configuration that makes them OpenSSL's random source through pkcs11-provider (contrib/openssl/ holds the shipped
files; this prints one for the module actually installed here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qrng.errors import NativeUnavailable, UsageError

from .common import ExitCode

__all__ = ["current_module", "module_path", "register"]


def module_path(qrngd: bool) -> Path:
    """The module: the daemon-mode module (C only) or the in-process one, as installed from a wheel
    (qrng_pkcs11/lib/) or built in a checkout (build/). NativeUnavailable (exit 2, "installation problem") when
    it is neither."""
    import qrng_pkcs11
    from qrng_pkcs11.build import CLIENT_TARGET, TARGET
    built = CLIENT_TARGET if qrngd else TARGET
    installed = Path(qrng_pkcs11.__file__).resolve().parent / "lib" / built.name
    for path in (installed, built):
        if path.is_file():
            return path
    raise NativeUnavailable(f"{built.name} is not installed ({installed}) nor built here ({built}); `make native` "
                            "builds it")


def current_module(qrngd: bool) -> Path:
    """The module to run: in a checkout, built now if its sources changed; installed from a wheel, as installed."""
    from qrng_pkcs11.build import CSRC, build, build_client
    if CSRC.is_dir():
        return build_client() if qrngd else build()
    return module_path(qrngd)


def cmd_module_path(args: argparse.Namespace) -> int:
    print(module_path(args.qrngd))
    return ExitCode.OK


def cmd_openssl_config(args: argparse.Namespace) -> int:
    from qrng_pkcs11.openssl_conf import openssl_rand_conf
    module = Path(args.module) if args.module else module_path(args.qrngd)
    text = str(module)
    if not text.isprintable() or any(c in text for c in "#$[]=\"'\\"):
        # one value line of OpenSSL's configuration: a newline, '#', '$' or a quote would change what it says
        raise UsageError(f"--module {text!r}: a path with a control character or one of # $ [ ] = ' \" \\ cannot be "
                         "written into an OpenSSL configuration")
    if not module.is_file():
        raise UsageError(f"--module {module}: no such file")
    print(openssl_rand_conf(module), end="")
    return ExitCode.OK


def register(sub: Any) -> None:
    m = sub.add_parser("module-path", help="where this installation's PKCS#11 module is (for pkcs11-tool --module, "
                                           "p11-kit, NSS, Java)", description=__doc__)
    m.add_argument("--qrngd", action="store_true",
                   help="the module in daemon mode (C only, seeded from qrngd) instead of the in-process one")
    m.set_defaults(func=cmd_module_path)
    o = sub.add_parser("openssl-config", help="print an OpenSSL 3 configuration making the module OpenSSL's random "
                                              "source (OPENSSL_CONF=FILE openssl rand ...)", description=__doc__)
    o.add_argument("--qrngd", action="store_true", help="for the module in daemon mode (recommended: 6 ms to start)")
    o.add_argument("--module", metavar="PATH", help="a module at another path (default: this installation's)")
    o.set_defaults(func=cmd_openssl_config)
