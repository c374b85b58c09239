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

hr "qrngd: one daemon owns the USB EMULATOR; consumers load the C-only PKCS#11 module in daemon mode"
mkdir -p out
SOCK="$PWD/out/qrngd-demo.sock"
qrng daemon --config "$U" --socket "$SOCK" 2>out/qrngd-demo.log &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do qrng status --socket "$SOCK" >/dev/null 2>&1 && break; sleep 0.1; done
export QRNGD_SOCKET="$SOCK"
pkcs11-tool --module build/libqrng-pkcs11-qrngd.so -T 2>/dev/null | grep -E "label|model"
printf 'pkcs11-tool: '; pkcs11-tool --module build/libqrng-pkcs11-qrngd.so --generate-random 16 2>/dev/null | xxd -p
kill $QPID; wait $QPID 2>/dev/null || true
echo "daemon stopped: the module fails closed (no bytes) ..."
if pkcs11-tool --module build/libqrng-pkcs11-qrngd.so --generate-random 16 >/dev/null 2>&1; then
  echo "UNEXPECTED: bytes without the daemon"; exit 1; fi
qrng daemon --config "$U" --socket "$SOCK" 2>>out/qrngd-demo.log &
QPID=$!
for _ in $(seq 100); do qrng status --socket "$SOCK" >/dev/null 2>&1 && break; sleep 0.1; done
printf 'daemon back, serving again: '; pkcs11-tool --module build/libqrng-pkcs11-qrngd.so --generate-random 16 2>/dev/null | xxd -p
qrng status --socket "$SOCK" | sed -n 1,4p   # sed reads it all: a closed pipe is never a success (exit 141)
kill $QPID; wait $QPID 2>/dev/null || true
trap - EXIT
unset QRNGD_SOCKET

if [ -f scripts/demo_ceremony.sh ]; then
  bash scripts/demo_ceremony.sh
fi
