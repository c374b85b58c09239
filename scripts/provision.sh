#!/usr/bin/env bash
# Provisioning (root, once per machine): the Debian packages the project builds and tests with.
# Adds two apt source entries for the Debian mirror that is already configured (its URI is read from the
# existing deb822 source; no host is named here): bookworm-backports, for OpenSSL 3's pkcs11-provider, and
# deb-src, for the gf2x source package that scripts/build_gf2x.sh builds in its LGPL configuration.
# Idempotent: checks what is installed and does only what is missing. Nothing here touches the project tree.
set -euo pipefail
log() { printf '[provision] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PKGS=(softhsm2 opensc gnutls-bin p11-kit p11-kit-modules libnss3-tools default-jdk-headless ent rng-tools5
          dieharder libengine-pkcs11-openssl debhelper lintian mmdebstrap chrpath python3-dev libgf2x-dev libssl-dev build-essential dpkg-dev bc python3-venv graphviz
          opencryptoki libdivsufsort-dev
          libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils chromium
          libusb-1.0-0 golang-go golang-golang-x-mod-dev udev umockdev faketime)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${APT_PKGS[@]}"; do installed "$p" || missing+=("$p"); done

need_update=0
uri=""
[ -f /etc/apt/sources.list.d/debian.sources ] && uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
BPO=/etc/apt/sources.list.d/qrng-backports.sources
SRC=/etc/apt/sources.list.d/qrng-src.sources
if [ -n "$uri" ] && [ ! -f "$BPO" ] && ! installed pkcs11-provider; then
  log "adding bookworm-backports for the configured mirror"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' "$uri" "$KEYRING" | $SUDO tee "$BPO" >/dev/null
  need_update=1
fi
if [ -n "$uri" ] && [ ! -f "$SRC" ] && ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding deb-src (bookworm) for the configured mirror"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' "$uri" "$KEYRING" | $SUDO tee "$SRC" >/dev/null
  need_update=1
fi
installed pkcs11-provider || need_update=1
installed prometheus || need_update=1
if [ ${#missing[@]} -gt 0 ] || [ $need_update = 1 ]; then
  log "installing Debian packages: ${missing[*]:-} pkcs11-provider"
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! installed prometheus; then
    # only for promtool (the alert-rule tests): Debian's package would also start a Prometheus server on :9090,
    # so a policy-rc.d answering 101 ("action forbidden") keeps its service from starting during the install
    rc_guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod 755 /usr/sbin/policy-rc.d
      rc_guard=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || log "WARNING: prometheus (promtool) could not be installed; the alert-rule tests will be skipped"
    [ -z "$rc_guard" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  fi
  if ! installed pkcs11-provider; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports pkcs11-provider >/dev/null \
      || log "WARNING: pkcs11-provider (bookworm-backports) could not be installed; openssl rand tests will be skipped"
  fi
fi
