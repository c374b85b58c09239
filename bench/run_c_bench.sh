#!/usr/bin/env bash
# PKCS#11 C_GenerateRandom: ours vs SoftHSM2 vs getrandom(2) vs OpenSSL RAND_bytes, one run, one table.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=build/bench/c_generate_random
mkdir -p build/bench
gcc -O2 -Ibuild bench/c_generate_random.c -o "$exe" -ldl -lcrypto
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
export SOFTHSM2_CONF=$PWD/.softhsm/softhsm2.conf
cfg=$(mktemp); printf 'version: 1\nsource: {type: simulator}\n' > "$cfg"
ours=$(QRNG_CONFIG=$cfg "$exe" build/libqrng-pkcs11.so 2>/dev/null)
soft=$("$exe" "$SOFTHSM" 2>/dev/null)
grnd=$("$exe" x getrandom)
ossl=$("$exe" x openssl)
rm -f "$cfg"
echo "C_GenerateRandom (µs per call, MB/s; min of 7 repetitions)"
printf '| %-8s | %-22s | %-22s | %-7s | %-18s | %-18s |\n' request "qrng module" SoftHSM2 "ratio*" getrandom "OpenSSL RAND_bytes"
printf '|%s|\n' "----------|------------------------|------------------------|---------|--------------------|-------------------"
paste <(echo "$ours") <(echo "$soft") <(echo "$grnd") <(echo "$ossl") | while read -r n o1 o2 s0 s1 s2 g0 g1 g2 r0 r1 r2; do
  case $n in 32) lab="32 B";; 1024) lab="1 KiB";; 65536) lab="64 KiB";; 1048576) lab="1 MiB";; esac
  ratio=$(awk -v a="$o1" -v b="$s1" 'BEGIN{printf "%.2f", a/b}')
  printf '| %-8s | %9s µs %6s MB/s | %9s µs %6s MB/s | %7s | %7s µs %5s MB/s | %7s µs %5s MB/s |\n' \
    "$lab" "$o1" "$o2" "$s1" "$s2" "$ratio" "$g1" "$g2" "$r1" "$r2"
done
echo "* ratio = our time per call / SoftHSM2's (<= 1.0: at least as fast)"
printf 'pkcs11-tool -I start-up: '
QRNG_CONFIG=/dev/null /usr/bin/time -f '%e s (ours)' pkcs11-tool --module build/libqrng-pkcs11.so -I 2>&1 >/dev/null | tail -1
printf '                         '
/usr/bin/time -f '%e s (SoftHSM2)' pkcs11-tool --module "$SOFTHSM" -I 2>&1 >/dev/null | tail -1
