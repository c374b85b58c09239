"""``qrng beacon``: a witnessed QRNG randomness beacon (transparency/beacon.py for the pulse format).

run: every --period seconds a pulse from the QRNG pipeline, signed by the beacon key (a file key, or a key held in an
HSM through a ceremony profile), appended to a signed audit log, its checkpoint cosigned by the witnesses of a C2SP
tlog-policy, and the log published as C2SP tiles. A failed health state never emits a pulse: the next pulse says
there was a gap. verify: pulses checked offline from the log or its tiles: signatures, chaining, precommitments, link
values, the log's signed checkpoint and the witness quorum.

Beacon values are public: never use them as secret keys or as seeds of secrets.

Exit codes: 0 ran / verified; 1 verification failed; 2 usage or I/O error; 3 entropy failure at start."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qrng.atomic import atomic_write
from qrng.errors import UsageError

from .common import ExitCode

__all__ = ["register"]


def _certificate(path: str) -> bytes:
    """The beacon certificate (PEM or DER) as DER; a missing file says so, naming it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"--certificate {path}: no such file") from None
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise UsageError(f"--certificate {path}: not an X.509 certificate") from None
    return cert.public_bytes(serialization.Encoding.DER)


def _beacon_signer(args: argparse.Namespace) -> Any:
    """The beacon key (RSA, cipher suite 0) with its certificate: a PEM private key file, or a key in an HSM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from transparency.beacon import BeaconSigner
    cert_der = _certificate(args.certificate)
    cert_spki = x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if args.key:
        try:
            key = serialization.load_pem_private_key(Path(args.key).read_bytes(), None)
        except FileNotFoundError:
            raise FileNotFoundError(f"--key {args.key}: no such file") from None
        except (ValueError, TypeError):
            raise UsageError(f"--key {args.key}: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise UsageError(f"--key {args.key}: cipher suite 0 signs with RSA; this is not an RSA key")
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        def sign(message: bytes) -> bytes:
            return key.sign(message, padding.PKCS1v15(), hashes.SHA512())
    elif args.hsm_profile and args.profile and args.key_label:
        from ceremony.model import load_profile
        from qrng.hsm import open_signer
        hsm = open_signer(load_profile(Path(args.hsm_profile), args.profile).hsm, args.key_label, "beacon")
        spki, sign = hsm.public_der, hsm.sign
    else:
        raise UsageError("give --key FILE, or --hsm-profile, --profile and --key-label for a key in an HSM")
    if spki != cert_spki:
        raise UsageError(f"--certificate {args.certificate} is not the beacon key's certificate (another public key)")
    return BeaconSigner(cert_der, sign)


def cmd_run(args: argparse.Namespace) -> int:
    from qrng.config import load_config
    from transparency.beacon_service import BeaconRun, BeaconService
    from transparency.note import load_ed25519_signer
    if not math.isfinite(args.period) or not 0.5 <= args.period <= 86400:
        raise UsageError(f"--period {args.period}: seconds, from 0.5 to 86400")
    if args.pulses < 0:
        raise UsageError(f"--pulses {args.pulses}: a count, 0 for no limit")
    signer = _beacon_signer(args)
    log_signer = load_ed25519_signer(Path(args.log_key).read_text())
    policy = None
    if args.policy:
        from transparency.policy import load_policy
        policy = load_policy(args.policy)
    run = BeaconRun(period_s=args.period, pulses=args.pulses, log_path=Path(args.log),
                    state_dir=_state_folder(Path(args.state)),
                    uri_prefix=args.uri_prefix or f"https://{log_signer.name}/beacon/2.0",
                    tiles=Path(args.tiles) if args.tiles else None)
    service = BeaconService(run, load_config(args.config), signer, log_signer, policy,
                            say=lambda m: print(m, flush=True), warn=lambda m: print(m, file=sys.stderr, flush=True))
    signal.signal(signal.SIGTERM, lambda signum, frame: service.stop())
    service.serve()
    return ExitCode.OK


def _state_folder(path: Path) -> Path:
    """The beacon's state folder: made mode 700; refused if it is a symlink or others can read or write it (it
    holds the precommitted secret)."""
    import stat
    if path.is_symlink():
        raise UsageError(f"--state {path}: is a symbolic link; give the folder itself")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077:
        raise UsageError(f"--state {path}: must be a folder only its owner can read (mode 700); it is "
                         f"{oct(st.st_mode & 0o777)}")
    return path


def _read_log_key(value: str) -> Any:
    from transparency.keys import read_key
    return read_key(value, "log", what="--log-key")


def cmd_verify(args: argparse.Namespace) -> int:
    from transparency.beacon import BeaconError, verify_pulses
    from transparency.beacon_service import pulses_in
    from transparency.policy import load_policy
    from transparency.verify import key_names
    cert = _certificate(args.certificate)
    log_keys = _read_log_key(args.log_key)
    policy = load_policy(args.policy) if args.policy else None
    witnesses = policy.witness_keys() if policy else []
    if args.log.startswith(("http://", "https://")) or (Path(args.log) / "checkpoint").is_file():
        from transparency.tilesio import TileSource, verify_tiles
        src = TileSource(args.log)
        r = verify_tiles(src, log_keys, witnesses, 0)
        # the pulses are read from the very bytes verify_tiles verified, never from a second fetch (a server could
        # answer differently the second time)
        cosigners, entries, size = r.cosigners, list(r.entry_bytes), r.checkpoint.size
    else:
        from transparency.verify import parse_log, verify_log
        data = Path(args.log).read_bytes()
        res = verify_log(data, log_keys, witnesses, 0)
        cosigners, entries, size = res.cosigners, parse_log(data).entries[:res.latest.size], res.latest.size
    if policy is not None and not policy.met_by(cosigners):
        from transparency.errors import QuorumNotMet
        raise QuorumNotMet(f"the log's checkpoint (size {size}) lacks the witness quorum of {args.policy}")
    pulses = pulses_in(entries)
    if not pulses:
        raise BeaconError("the log holds no pulse")
    lo = args.first or pulses[0].pulse_index
    hi = args.last or pulses[-1].pulse_index
    chosen = [p for p in pulses if lo <= p.pulse_index <= hi]
    if not chosen:
        raise BeaconError(f"no pulse numbered {lo}..{hi} in the log")
    start = pulses.index(chosen[0])
    verify_pulses(pulses[:start + len(chosen)], cert)  # from the chain's first pulse: links are recomputed
    from transparency.verdict import NOT_CHECKED, Check, Verdict
    checks = [
        Check("Log and its checkpoint", "C2SP tlog-checkpoint, RFC 9162 (and tlog-tiles for a tiles log) with the "
              "log key given", "passed", f"{size} entries"),
        Check("Pulses", "every NIST Randomness Beacon 2.0 rule (NISTIR 8213) with the certificate given", "passed",
              f"pulses {chosen[0].pulse_index}..{chosen[-1].pulse_index}: certificate id, signatures, output values, "
              "chaining, precommitments, link values, status codes, period grid"),
        Check("Witness quorum", "C2SP tlog-cosignature and tlog-policy, counted by key", "passed",
              f"{', '.join(key_names(cosigners))} meet the quorum of {args.policy}") if policy is not None else
        Check("Witness quorum", "C2SP tlog-cosignature and tlog-policy, counted by key", NOT_CHECKED,
              "no --policy: whether witnesses saw these pulses was not checked")]
    complete = Verdict(tuple(checks)).complete
    out = {"status": "verified" if complete else "unverified", "exit_code": 0 if complete else 4,
           "pulses": len(chosen), "first": chosen[0].pulse_index, "last": chosen[-1].pulse_index, "log_size": size,
           "cosigners": list(key_names(cosigners)), "witness_quorum": checks[-1].result,
           "gaps": [p.pulse_index for p in chosen if p.status_code & 2], "checks": [c.to_dict() for c in checks]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for c in checks:
            print(c.line())
        if complete:
            print(f"verified: pulses {out['first']}..{out['last']} ({out['pulses']})")
    if not complete:
        print("NOT INDEPENDENTLY VERIFIED (exit 4): give --policy to check the witnesses' quorum", file=sys.stderr)
        return ExitCode.UNVERIFIED
    return 0


def cmd_pulse(args: argparse.Namespace) -> int:
    """One pulse as NIST's 2.0 API serves it: ``{"pulse": {...}}``."""
    from transparency.beacon import BeaconError
    from transparency.beacon_service import pulses_in
    from transparency.verify import parse_log
    pulses = pulses_in(parse_log(Path(args.log).read_bytes()).entries)
    if not pulses:
        raise BeaconError(f"{args.log} holds no pulse")
    p = pulses[-1] if args.index is None else next((q for q in pulses if q.pulse_index == args.index), None)
    if p is None:
        raise BeaconError(f"{args.log} holds no pulse {args.index}")
    print(json.dumps({"pulse": p.to_json()}, indent=2))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """An RSA beacon key in a file and a self-signed certificate for it (for rehearsals; in production the key is
    made in an HSM by a ceremony and its certificate issued by the ceremony's CA)."""
    from transparency.beacon import certificate_id, self_signed_beacon_key
    key_pem, cert_pem, cert_der = self_signed_beacon_key(args.subject, args.bits)
    out, cert = Path(args.out), Path(args.certificate)
    for path in (out, cert):
        if path.exists():
            raise FileExistsError(f"{path} exists; refusing to overwrite")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    atomic_write(cert, cert_pem)
    print(f"beacon key {out} (RSA-{args.bits}, mode 600) and self-signed certificate {cert}; certificateId "
          f"{certificate_id(cert_der)}")
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser("beacon", help="a witnessed QRNG randomness beacon: run it, verify its pulses",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = b.add_subparsers(dest="beacon_command", required=True, metavar="ACTION")
    r = s.add_parser("run", help="emit a NIST Randomness Beacon 2.0 pulse every --period seconds")
    r.add_argument("--config", help="entropy-core YAML of the QRNG (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml)")
    r.add_argument("--key", help="the beacon's RSA private key file, PEM (`qrng beacon keygen`)")
    r.add_argument("--hsm-profile", help="or: a ceremony profiles file, whose --profile opens the HSM ...")
    r.add_argument("--profile", help="... this profile in it ...")
    r.add_argument("--key-label", help="... where the beacon's RSA key has this label")
    r.add_argument("--certificate", required=True,
                   help="the beacon key's X.509 certificate (PEM or DER); its SHA-512 is every pulse's certificateId")
    r.add_argument("--uri-prefix",
                   help="pulse URIs are PREFIX/chain/C/pulse/N (default: https://<log origin>/beacon/2.0)")
    r.add_argument("--log", required=True, help="the signed audit log the pulses go into (JSON lines)")
    r.add_argument("--log-key", required=True, help="the log's Ed25519 key file; its name is the log's origin")
    r.add_argument("--policy", help="a C2SP tlog-policy file: each pulse's checkpoint is cosigned by its witnesses")
    r.add_argument("--tiles", metavar="DIR", help="publish the log as C2SP tiles here after each pulse")
    r.add_argument("--state", required=True, metavar="DIR",
                   help="keeps the precommitted next local random value (secret until published; mode 600)")
    r.add_argument("--period", type=float, default=60.0, help="seconds between pulses (default 60)")
    r.add_argument("--pulses", type=int, default=0, help="stop after this many pulses (default: run until SIGTERM)")
    r.set_defaults(func=cmd_run)
    v = s.add_parser("verify", help="verify pulses offline from the log or its tiles, by every NIST 2.0 rule",
                     description="Exit codes: 0 verified (with --policy: the witness quorum too); 1 a rule or "
                                 "signature failed; 2 usage or I/O error; 4 the pulses verify but the witness quorum "
                                 "was not checked (no --policy).")
    v.add_argument("log", help="the beacon's audit log, or its tiles (URL prefix or folder)")
    v.add_argument("--certificate", required=True, help="the beacon's X.509 certificate (PEM or DER)")
    v.add_argument("--log-key", required=True, help="the log's verifier key (string, file or PEM public key)")
    v.add_argument("--policy", help="C2SP tlog-policy: the witness quorum the log's checkpoint must carry")
    v.add_argument("--first", type=int, help="first pulse index to verify (default: the first)")
    v.add_argument("--last", type=int, help="last pulse index to verify (default: the last)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_verify)
    pl = s.add_parser("pulse", help="print a pulse as NIST's 2.0 API serves it ({\"pulse\": {...}})")
    pl.add_argument("log", help="the beacon's audit log")
    pl.add_argument("--index", type=int, help="the pulse index (default: the last)")
    pl.set_defaults(func=cmd_pulse)
    k = s.add_parser("keygen", help="an RSA beacon key file and a self-signed certificate (rehearsals)")
    k.add_argument("--out", required=True, help="the private key file to write (PEM, mode 600)")
    k.add_argument("--certificate", required=True, help="the certificate file to write (PEM)")
    k.add_argument("--subject", default="qrng-ceremony beacon (self-signed, rehearsal)", help="the certificate's CN")
    k.add_argument("--bits", type=int, choices=(3072, 4096), default=3072, help="RSA modulus size (default 3072)")
    k.set_defaults(func=cmd_keygen)
