#!/usr/bin/env bash
# Build Debian's gf2x source package with hardware-specific code (PCLMULQDQ) and its FFT interface into
# build/gf2x, in its LGPL-2.1+ configuration.
#
# Licence: gf2x is LGPL-2.1+ only when its toom-gpl.c is the trivial placeholder (its own licence header says so);
# the source package ships the real toom-gpl.c, which makes the library (and Debian's binary) GPL-3+. We replace
# toom-gpl.c with the toom-gpl-placeholder.c that gf2x ships for exactly this purpose before configuring, and
# check afterwards that the library reports itself as "LGPL-licensed GF2X" (gf2x_toom_gpl_status).
#
# Debian's binary package is built generic (--disable-hardware-specific-code) and multiplies the 2^20-bit
# Toeplitz blocks about 9x slower. Optional: on any failure the system libgf2x is used (see README, licences).
# GF2X_PREFIX overrides the destination (benchmarks compare builds side by side).
set -uo pipefail
cd "$(dirname "$0")/.."
PREFIX=${GF2X_PREFIX:-$PWD/build/gf2x}
MARK="$PREFIX/LICENCE"
[ -f "$PREFIX/lib/libgf2x-fft.so" ] && [ "$(cat "$MARK" 2>/dev/null)" = "LGPL-2.1+" ] && exit 0
rm -rf "$PREFIX"
grep -qw pclmulqdq /proc/cpuinfo || { echo "[gf2x] no PCLMULQDQ: using the system libgf2x" >&2; exit 0; }
if ! apt-get source --print-uris gf2x >/dev/null 2>&1; then
  echo "[gf2x] no deb-src entry for gf2x: run 'make provision' (as root) first; using the system libgf2x" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[gf2x] building gf2x (LGPL configuration, PCLMULQDQ, FFT interface) into $PREFIX" >&2
( cd "$work" && apt-get source -qq gf2x >/dev/null 2>&1 && cd gf2x-*/ \
  && cp toom-gpl-placeholder.c toom-gpl.c \
  && ./configure -q --prefix="$PREFIX" --enable-hardware-specific-code --enable-fft-interface --disable-static >/dev/null \
  && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null 2>&1 ) \
  || { echo "[gf2x] build failed: using the system libgf2x" >&2; rm -rf "$PREFIX"; exit 0; }
status=$(python3 -c "import ctypes,sys; print(ctypes.c_char_p.in_dll(ctypes.CDLL(sys.argv[1]), 'gf2x_toom_gpl_status').value.decode())" "$PREFIX/lib/libgf2x.so")
if [ "$status" != "LGPL-licensed GF2X" ]; then
  echo "[gf2x] the build reports '$status', not the LGPL configuration: using the system libgf2x" >&2
  rm -rf "$PREFIX"; exit 0
fi
echo "LGPL-2.1+" > "$MARK"
