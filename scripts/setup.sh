#!/usr/bin/env bash
# The project's build stages, each idempotent (it checks what is there and does only what is missing):
#   venv      .venv with `pip install -e .[dev]` (enough for `make lint` and `make check`)
#   native    the LGPL gf2x build, qrng._native and build/libqrng-pkcs11.so (needs `make provision`)
#   fixtures  a SoftHSM2 token and TEST-ONLY attestation and witness keys under .softhsm/
# Usage: scripts/setup.sh STAGE...  Nothing here changes the system: see `make provision` (Debian packages)
# and `make install-module` (system-wide p11-kit registration), both explicit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*" >&2; }

stage_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp
  stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing the package and its dev dependencies (log: build/setup-pip.log)"
    mkdir -p build
    if ! { "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[dev]"; } > build/setup-pip.log 2>&1; then
      cat build/setup-pip.log >&2
      log "pip install failed (see above)"
      exit 1
    fi
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

stage_native() {
  bash scripts/build_gf2x.sh
  "$VENV/bin/python" -m qrng._native_build >/dev/null
  "$VENV/bin/python" -m qrng_pkcs11.build >/dev/null
  "$VENV/bin/python" -m qrng_pkcs11.build --qrngd >/dev/null
}

stage_fixtures() {
  bash scripts/softhsm-token.sh
  # TEST-ONLY attestation material and rehearsal keys (never used in production)
  local q="$VENV/bin/qrng"
  [ -f .softhsm/attestation/device-SIM-0001.pem ] || "$q" attestation init-simulator --dir .softhsm/attestation >/dev/null
  # the USB EMULATOR (a software device) with a TEST-ONLY firmware transparency log holding its firmware
  [ -f .softhsm/usb-emulator/EMU-0001/device.json ] || "$q" usb emulator init --dir .softhsm/usb-emulator/EMU-0001 \
    --attestation-dir .softhsm/attestation --firmware-log .softhsm/usb-emulator/fwlog >/dev/null
  mkdir -p .softhsm/witnesses
  for w in carol dave; do
    [ -f .softhsm/witnesses/$w.key ] || "$q" audit keygen "witness.example/$w" --witness --out .softhsm/witnesses/$w.key >/dev/null
  done
  [ -f .softhsm/bootstrap-log.key ] || "$q" audit keygen qrng-ceremony/bootstrap --out .softhsm/bootstrap-log.key >/dev/null
  # a private p11-kit configuration for this checkout (tests and the demo point P11_KIT_CONFIG... at it)
  mkdir -p .softhsm/p11-kit/modules
  printf 'module: %s/build/libqrng-pkcs11.so\ncritical: no\n' "$ROOT" > .softhsm/p11-kit/modules/qrng-ceremony.module
}

[ $# -gt 0 ] || set -- venv native fixtures
for stage in "$@"; do
  case "$stage" in
    venv|native|fixtures) "stage_$stage" ;;
    *) log "unknown stage '$stage' (venv, native, fixtures)"; exit 2 ;;
  esac
done
