#!/usr/bin/env bash
# A SoftHSM2 token under the project folder (.softhsm/) for rehearsals, tests and the demo.
# PINs are written to .softhsm/pins.env (mode 600), never into a ceremony script or a log.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$PWD/.softhsm
CONF=$DIR/softhsm2.conf
LABEL=${QRNG_SOFTHSM_LABEL:-qrng-rehearsal}
mkdir -p "$DIR/tokens"
chmod 700 "$DIR"
if [ ! -f "$CONF" ]; then
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$DIR" > "$CONF"
fi
export SOFTHSM2_CONF=$CONF
if [ ! -f "$DIR/pins.env" ]; then
  umask 077
  printf 'QRNG_HSM_USER_PIN=%s\nQRNG_HSM_SO_PIN=%s\n' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" \
    "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" > "$DIR/pins.env"
fi
# shellcheck disable=SC1091
. "$DIR/pins.env"   # shell variables only: nothing below passes a PIN as an argument
# the user PIN alone, for tools that read a PIN from a file (OpenSSL's pkcs11 engine: pin-source=file:...)
if [ ! -f "$DIR/user.pin" ]; then
  umask 077
  printf '%s' "$QRNG_HSM_USER_PIN" > "$DIR/user.pin"
fi
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*$LABEL"; then
  # through PKCS#11 with the PINs read from the file: never on a command line (/proc/*/cmdline)
  "${VENV:-$PWD/.venv}/bin/python" scripts/init_token.py /usr/lib/softhsm/libsofthsm2.so "$LABEL" "$DIR/pins.env"
  echo "[setup] SoftHSM2 token '$LABEL' created in $DIR (PINs in $DIR/pins.env)" >&2
fi
