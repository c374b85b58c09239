#!/usr/bin/env bash
# The ceremony part of `make demo`: the audit-key ceremony (once), then the root-CA ceremony on SoftHSM2
# with the simulator, then every check an auditor would make. Re-running resumes and re-verifies.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SOFTHSM2_CONF=$PWD/.softhsm/softhsm2.conf
W=(--witness .softhsm/witnesses/carol.key.pub --witness .softhsm/witnesses/dave.key.pub)
hr() { printf '\n=== %s\n' "$*"; }

hr "Ceremony 1: the HSM key that signs audit logs (log signed by a bootstrap file key)"
qrng ceremony run ceremonies/audit-key.yaml --profile rehearsal-bootstrap

hr "Ceremony 2: root CA + issuing CA + CRL on SoftHSM2 (plan first: nothing touched if it is wrong)"
# the run sheet people print, follow, initial and sign; made from the same plan the engine runs
qrng ceremony plan ceremonies/root-ca.yaml --profile rehearsal --sheet out/root-ca-2026-run-sheet.pdf --force
qrng ceremony plan ceremonies/root-ca.yaml --profile rehearsal --sheet out/root-ca-2026-run-sheet.html --force \
  >/dev/null
start=$(date +%s.%N)
qrng ceremony run ceremonies/root-ca.yaml --profile rehearsal
end=$(date +%s.%N)
printf 'qrng ceremony run took %.1f s (a finished ceremony is left as it is)\n' "$(echo "$end - $start" | bc)"

O=out/root-ca-2026
hr "Auditor: verify the signed log offline (HSM-held ECDSA checkpoints, two witness cosignatures)"
# the auditor gives the log key and the witnesses' keys (here the files the run wrote; in real life the copies
# published with the ceremony's records): exit 0 means every check the recorded policy asks for was made with them
K=(--key "$O/log.pub")
qrng audit verify "$O/audit.log" "${K[@]}" "${W[@]}" --state out/auditor-state
qrng ceremony verify "$O" "${K[@]}" "${W[@]}" --report out/root-ca-2026-audit-report.pdf --force
qrng ceremony verify "$O" "${K[@]}" "${W[@]}" --report out/root-ca-2026-audit-report.html --force >/dev/null

hr "Auditor without the witnesses' keys: consistent, but not independently verified (exit 4, never 0)"
set +e
qrng ceremony verify "$O" "${K[@]}" | grep -E "NOT CHECKED|Witness" | head -2
qrng ceremony verify "$O" "${K[@]}" >/dev/null 2>&1; echo "exit code: $?"
set -e

hr "The log as static C2SP tiles on a static web server (loopback), verified from there with --state"
rm -rf out/tiles && qrng audit publish "$O/audit.log" out/tiles/root-ca-2026
PORT=$(python3 -c 'from tests.netwait import free_port; print(free_port())')
qrng audit serve out/tiles --listen "127.0.0.1:$PORT" 2>/dev/null &   # C2SP tlog-tiles' Content-Types
WEB=$!
python3 -c "from tests.netwait import wait_for_port; wait_for_port($PORT, 10)"
qrng audit verify "http://127.0.0.1:$PORT/root-ca-2026" "${K[@]}" "${W[@]}" --state out/auditor-state-tiles
rm -f out/tiles-entry-3.proof out/tiles-entry-3.entry   # prove --out never overwrites
qrng audit prove "http://127.0.0.1:$PORT/root-ca-2026" --index 3 --key "$O/log.pub" --state out/auditor-state-tiles \
  --out out/tiles-entry-3.proof
kill $WEB; wait $WEB 2>/dev/null || true

hr "The chain with OpenSSL"
openssl verify -x509_strict -CAfile "$O/root-ca.pem" "$O/issuing-ca.pem"
openssl crl -in "$O/root-ca.crl" -noout -CAfile "$O/root-ca.pem"

hr "The root key signs through OpenSSL's pkcs11 engine (libp11), inside SoftHSM2"
msg=$(mktemp); sig=$(mktemp)
echo "signed by the root key held in the HSM" > "$msg"
OPENSSL_CONF=/dev/null openssl dgst -engine pkcs11 -keyform engine -sha384 \
  -sign "pkcs11:token=qrng-rehearsal;object=root-ca-2026;type=private?pin-source=file:$PWD/.softhsm/user.pin" \
  -out "$sig" "$msg" 2>/dev/null
openssl dgst -sha384 -verify "$O/root-ca-2026.pub.pem" -signature "$sig" "$msg"
rm -f "$msg" "$sig"

hr "Ceremony papers"
pdftotext -l 1 "$O/transcript.pdf" - | sed -n '1,/Final checkpoint/p' | grep -v '^$' | head -20
cat <<EOF
  before the ceremony  out/root-ca-2026-run-sheet.pdf (.html)    print, follow, initial, sign
  after it             $O/transcript.pdf (.html)  the record, from the verified log
  for the auditor      out/root-ca-2026-audit-report.pdf (.html)  every check, how, and its result
EOF
