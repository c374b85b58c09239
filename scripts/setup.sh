#!/usr/bin/env bash
# Idempotent set-up for qrng-ceremony on Debian 12: system packages, the virtualenv,
# the PKCS#11 module, a SoftHSM2 token and the test-only manufacturer CA.
# Each stage checks what is already there and does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- Debian packages -------------------------------------------------------
APT_PKGS=(softhsm2 opensc gnutls-bin p11-kit p11-kit-modules libnss3-tools
          default-jdk-headless ent rng-tools5 dieharder libengine-pkcs11-openssl
          libgf2x-dev libssl-dev build-essential bc)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# OpenSSL 3 pkcs11-provider lives in bookworm-backports: add that suite for the mirror
# already configured (its URI is read from the existing deb822 source, no host is named here).
BPO=/etc/apt/sources.list.d/qrng-backports.sources
need_update=0
if ! dpkg-query -W -f='${Status}' pkcs11-provider 2>/dev/null | grep -q "install ok installed"; then
  if [ ! -f "$BPO" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    log "adding bookworm-backports for $uri"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" | $SUDO tee "$BPO" >/dev/null
  fi
  need_update=1
fi
if [ ${#missing[@]} -gt 0 ] || [ $need_update = 1 ]; then
  log "installing Debian packages: ${missing[*]:-} pkcs11-provider"
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! dpkg-query -W -f='${Status}' pkcs11-provider 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports pkcs11-provider >/dev/null \
      || log "WARNING: pkcs11-provider (bookworm-backports) could not be installed; openssl rand tests will be skipped"
  fi
fi

# --- virtualenv ------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
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

# --- native parts ------------------------------------------------------------
bash scripts/build_gf2x.sh
"$VENV/bin/python" -m qrng._native_build >/dev/null
"$VENV/bin/python" -m pkcs11_provider.build >/dev/null

# --- p11-kit registration (only p11-kit itself, p11tool and p11-kit server load it) ---------------
REG=/etc/pkcs11/modules/qrng-ceremony.module
want="module: $ROOT/build/libqrng-pkcs11.so"
if [ ! -f "$REG" ] || ! grep -qxF "$want" "$REG"; then
  $SUDO mkdir -p /etc/pkcs11/modules
  printf '%s\nenable-in: p11-kit, p11tool, p11-kit-server\ncritical: no\n' "$want" | $SUDO tee "$REG" >/dev/null
fi

# --- SoftHSM2 token under the project folder --------------------------------
bash scripts/softhsm-token.sh

# --- TEST-ONLY attestation material and rehearsal keys (never used in production) -----------------
Q="$VENV/bin/qrng"
[ -f .softhsm/attestation/device-SIM-0001.pem ] || "$Q" attestation init-simulator --dir .softhsm/attestation >/dev/null
mkdir -p .softhsm/witnesses
for w in carol dave; do
  [ -f .softhsm/witnesses/$w.key ] || "$Q" audit keygen "witness.example/$w" --witness --out .softhsm/witnesses/$w.key >/dev/null
done
[ -f .softhsm/bootstrap-log.key ] || "$Q" audit keygen qrng-ceremony/bootstrap --out .softhsm/bootstrap-log.key >/dev/null
log "ready"
