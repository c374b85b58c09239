"""Initialise a PKCS#11 token (C_InitToken, C_InitPIN) with PINs read from a file, so that no PIN ever appears
on a command line (visible to every user in /proc/*/cmdline). Works for SoftHSM2 and for tokens that ship with a
factory SO PIN which must be used once and changed (openCryptoki's software token: 87654321).

Usage: python scripts/init_token.py MODULE LABEL PINS_FILE [--slot N] [--factory-so-pin PIN]
PINS_FILE holds QRNG_HSM_USER_PIN=... and QRNG_HSM_SO_PIN=... lines (mode 600). Does nothing if a token with
LABEL exists already. The factory SO PIN is public (the vendor documents it), not a secret.
"""

from __future__ import annotations

import sys
from pathlib import Path

import PyKCS11


def read_pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            out[key.strip()] = value.strip()
    return out


def main(module: str, label: str, pins_file: str, slot_id: int | None = None, factory_so_pin: str | None = None) -> int:
    pins = read_pins(Path(pins_file))
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == label:
            return 0
    if slot_id is not None:
        slot = slot_id
    else:
        free = [s for s in lib.getSlotList(tokenPresent=True)
                if not lib.getTokenInfo(s).flags & PyKCS11.CKF_TOKEN_INITIALIZED]
        if not free:
            print(f"init_token: no uninitialised token in {module}", file=sys.stderr)
            return 1
        slot = free[0]  # SoftHSM2 renumbers its slots only when the library is initialised again
    so_pin, user_pin = pins["QRNG_HSM_SO_PIN"], pins["QRNG_HSM_USER_PIN"]
    lib.initToken(slot, factory_so_pin or so_pin, label.ljust(32)[:32])  # CK_UTF8CHAR[32], blank-padded
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(factory_so_pin or so_pin, PyKCS11.CKU_SO)
    if factory_so_pin:
        session.setPin(factory_so_pin, so_pin)
    session.initPin(user_pin)
    session.logout()
    session.closeSession()
    if lib.getTokenInfo(slot).flags & PyKCS11.CKF_USER_PIN_TO_BE_CHANGED:  # openCryptoki: set it once more
        session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        session.login(user_pin)
        session.setPin(user_pin, user_pin)
        session.logout()
        session.closeSession()
    return 0


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module", help="the PKCS#11 library")
    ap.add_argument("label", help="the token label to give")
    ap.add_argument("pins_file", help="file with QRNG_HSM_USER_PIN= and QRNG_HSM_SO_PIN= lines")
    ap.add_argument("--slot", type=int, help="the slot to initialise (default: the first uninitialised token)")
    ap.add_argument("--factory-so-pin", help="the token's documented factory SO PIN, used once and changed")
    a = ap.parse_args()
    try:
        sys.exit(main(a.module, a.label, a.pins_file, a.slot, a.factory_so_pin))
    except OSError as exc:
        sys.exit(f"init_token: {exc.filename or a.pins_file}: {exc.strerror}")
    except KeyError as exc:
        sys.exit(f"init_token: {a.pins_file}: no {exc.args[0]}= line")
    except PyKCS11.PyKCS11Error as exc:  # the token's answer, never a PIN
        sys.exit(f"init_token: {a.module}: {exc}")
