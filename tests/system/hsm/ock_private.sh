#!/usr/bin/env bash
# Run a command against a private openCryptoki software token, changing nothing on the machine.
# Usage: ock_private.sh STATE_DIR COMMAND [ARG...]
#
# openCryptoki keeps its state in fixed system paths (/var/lib/opencryptoki, /var/lock/opencryptoki, the slot
# daemon's pid file and socket in /run, SysV shared memory). The command runs in its own mount and IPC
# namespaces where those paths are folders under STATE_DIR (kept between calls, so a token initialised once is
# there next time), with its own pkcsslotd. The shipped /etc/opencryptoki/opencryptoki.conf already names the
# software token (slot 3, libpkcs11_sw.so). Needs root (unshare) and Debian's opencryptoki.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: ock_private.sh STATE_DIR COMMAND [ARG...]" >&2; exit 2; fi
state=$(readlink -f "$1"); shift
mkdir -p "$state/lib" "$state/run"
if [ ! -d "$state/lib/swtok" ]; then            # the package's empty skeleton, with its group and modes
  cp -a /var/lib/opencryptoki/. "$state/lib/"
fi
exec unshare --mount --ipc --propagation private -- bash -c '
  set -euo pipefail
  state=$1; shift
  mount -t tmpfs -o mode=0755 tmpfs /run
  mkdir -p /run/lock
  mount --bind "$state/lib" /var/lib/opencryptoki
  mkdir -p /run/lock/opencryptoki && chgrp pkcs11 /run/lock/opencryptoki && chmod 0770 /run/lock/opencryptoki
  for d in swtok lite tpm icsf ccatok ep11tok; do
    mkdir -p /run/lock/opencryptoki/$d && chgrp pkcs11 /run/lock/opencryptoki/$d && chmod 0770 /run/lock/opencryptoki/$d
  done
  pkcsslotd
  trap "kill \$(cat /run/pkcsslotd.pid 2>/dev/null) 2>/dev/null || true" EXIT
  "$@"
' ock-private "$state" "$@"
