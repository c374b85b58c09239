#!/usr/bin/env bash
# The clean Debian 12 root the package test installs into (tests/system/test_deb.py, `make deb-test`): made once
# per machine by mmdebstrap from Debian's package registry (the mirror apt already uses; no host is named here)
# and cached outside the checkout, as a tarball. It holds what the packages depend on and what the test runs
# (pkcs11-tool, openssl with pkcs11-provider from bookworm-backports, p11-kit), so installing the packages
# themselves needs no network. Prints the tarball's path. Root only (mmdebstrap's root mode).
set -euo pipefail
CACHE=${QRNG_DEB_ROOT_CACHE:-/var/cache/qrng-ceremony}
TAR="$CACHE/debian12-deb-test-root-v1.tar"
if [ -s "$TAR" ]; then echo "$TAR"; exit 0; fi
uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || { echo "deb_test_root: no Debian mirror configured in /etc/apt/sources.list.d/debian.sources" >&2; exit 2; }
mkdir -p "$CACHE"
echo "[deb-test] making a Debian 12 root with mmdebstrap into $TAR (once per machine)" >&2
mmdebstrap --quiet --variant=apt --mode=root --format=tar \
  --include=python3,libssl3,libdivsufsort3,adduser,p11-kit,p11-kit-modules,opensc,openssl,pkcs11-provider \
  bookworm "$TAR.tmp" "deb $uri bookworm main" "deb $uri bookworm-backports main" >&2
mv "$TAR.tmp" "$TAR"
echo "$TAR"
