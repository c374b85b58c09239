#!/usr/bin/env bash
# The demo a new user sees with `make demo`: health report and random bytes from the simulator,
# a fault that fails closed, then (when present) a full key ceremony on SoftHSM2 with audit verification.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
hr() { printf '\n=== %s\n' "$*"; }

hr "Entropy source and health tests (SP 800-90B 4.4)"
qrng health --samples 1000000

hr "32 random bytes through Toeplitz extraction and CTR_DRBG"
qrng bytes 32 --hex

hr "A stuck-at fault injected at sample 5000: the pipeline fails closed"
if qrng bytes 32 --hex --fault stuck_at@5000; then echo "UNEXPECTED: bytes were produced"; exit 1; fi
echo "(exit code 3, no bytes: as designed)"

hr "The USB EMULATOR (a software device speaking the qrng-ceremony USB protocol, never quantum) through pyusb"
E=.softhsm/usb-emulator/EMU-0001
U=ceremonies/entropy-usb-emulator.yaml
qrng sources --config "$U" | tail -2
qrng usb info --config "$U" --attest | grep -E "identity|label|firmware_sha256|healthy|counter"
qrng bytes 16 --hex --config "$U"
echo "unplugged: the PKCS#11 module answers CKR_DEVICE_REMOVED, the token is not present ..."
qrng usb emulator set --dir "$E" plugged=no >/dev/null
if qrng bytes 16 --hex --config "$U" 2>&1; then echo "UNEXPECTED: bytes from an unplugged device"; exit 1; fi
qrng usb emulator set --dir "$E" plugged=yes >/dev/null
echo "plugged back: serving again after its start-up tests"
qrng bytes 16 --hex --config "$U"

if [ -f scripts/demo_ceremony.sh ]; then
  bash scripts/demo_ceremony.sh
fi
