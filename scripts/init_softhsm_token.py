"""Initialise a SoftHSM2 token through PKCS#11 (C_InitToken, C_InitPIN) with PINs read from a file, so that no
PIN ever appears on a command line (visible to every user in /proc/*/cmdline).

Usage: python scripts/init_softhsm_token.py MODULE LABEL PINS_FILE
PINS_FILE holds QRNG_HSM_USER_PIN=... and QRNG_HSM_SO_PIN=... lines (mode 600). Does nothing if a token with
LABEL exists already.
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


def main(module: str, label: str, pins_file: str) -> int:
    pins = read_pins(Path(pins_file))
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == label:
            return 0
    free = [s for s in lib.getSlotList(tokenPresent=True)
            if not lib.getTokenInfo(s).flags & PyKCS11.CKF_TOKEN_INITIALIZED]
    if not free:
        print(f"init_softhsm_token: no uninitialised token in {module}", file=sys.stderr)
        return 1
    slot = free[0]  # SoftHSM2 renumbers its slots only when the library is initialised again
    lib.initToken(slot, pins["QRNG_HSM_SO_PIN"], label)
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(pins["QRNG_HSM_SO_PIN"], PyKCS11.CKU_SO)
    session.initPin(pins["QRNG_HSM_USER_PIN"])
    session.logout()
    session.closeSession()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
