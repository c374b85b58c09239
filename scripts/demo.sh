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

if [ -f scripts/demo_ceremony.sh ]; then
  bash scripts/demo_ceremony.sh
fi
