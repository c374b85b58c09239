#!/usr/bin/env bash
# Build Debian's gf2x source package with hardware-specific code (PCLMULQDQ) into build/gf2x.
# Debian's binary package is built generic (--disable-hardware-specific-code) and multiplies the
# 2^20-bit Toeplitz blocks about 9x slower. Optional: on any failure the system libgf2x is used.
set -uo pipefail
cd "$(dirname "$0")/.."
PREFIX=$PWD/build/gf2x
[ -f "$PREFIX/lib/libgf2x-fft.so" ] && exit 0
rm -rf "$PREFIX"
grep -qw pclmulqdq /proc/cpuinfo || { echo "[gf2x] no PCLMULQDQ: using the system libgf2x" >&2; exit 0; }
SRC=/etc/apt/sources.list.d/qrng-src.sources
if ! apt-get source --print-uris gf2x >/dev/null 2>&1 && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" > "$SRC"
  apt-get update -qq >/dev/null 2>&1
fi
command -v dpkg-source >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[gf2x] building gf2x with PCLMULQDQ into build/gf2x (about a minute)" >&2
( cd "$work" && apt-get source -qq gf2x >/dev/null 2>&1 && cd gf2x-*/ \
  && ./configure -q --prefix="$PREFIX" --enable-hardware-specific-code --enable-fft-interface --disable-static >/dev/null \
  && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null 2>&1 ) \
  || { echo "[gf2x] build failed: using the system libgf2x" >&2; rm -rf "$PREFIX"; exit 0; }
