#!/usr/bin/env bash
# `make deb`: the Debian packages qrng-pkcs11-qrngd and qrngd (debian/), built with Debian's own tools
# (dpkg-buildpackage, debhelper) from a copy of this tree in build/deb/ (dpkg-buildpackage writes the .debs beside
# the source folder, so the copy keeps them inside the checkout), then checked with lintian. Output: dist/deb/.
# Needs `make native` (the LGPL gf2x build is copied in) and `make provision` (debhelper, lintian); the qrngd
# package's build downloads the bundled Python dependencies from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(dpkg-parsechangelog -S Version)
WORK=build/deb
SRC="$WORK/qrng-ceremony-$VERSION"
OUT=dist/deb
log() { printf '[deb] %s\n' "$*" >&2; }
mkdir -p build
exec 9>build/.deb.lock  # two builds at once would remove each other's folder
flock -n 9 || { log "another make deb is running in this checkout (build/.deb.lock); nothing was changed"; exit 2; }
rm -rf "$WORK" "$OUT"
mkdir -p "$SRC/build" "$OUT"
# the tree as the checkout has it (tracked and new files, nothing ignored), and the LGPL gf2x build
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$SRC"
[ -d build/gf2x ] && cp -a build/gf2x "$SRC/build/"
log "dpkg-buildpackage in $SRC (log: $WORK/build.log)"
if ! (cd "$SRC" && dpkg-buildpackage -b -us -uc >../build.log 2>&1); then
  tail -40 "$WORK/build.log" >&2
  exit 1
fi
mv "$WORK"/*.deb "$OUT"/
log "lintian (log: $WORK/lintian.log)"
if ! lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$OUT"/*.deb >"$WORK/lintian.log" 2>&1; then
  cat "$WORK/lintian.log" >&2
  exit 1
fi
ls -la "$OUT"/*.deb
