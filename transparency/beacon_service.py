"""The witnessed beacon running (transparency/beacon.py holds the pulse format and its verification; the CLI only parses
options and starts :class:`BeaconService`).

Every ``period`` a pulse (NIST Randomness Beacon format 2.0) from a health-tested pipeline, signed, appended to
the signed audit log with a checkpoint, cosigned by the witnesses of a C2SP tlog-policy when one is given, and the
log published as C2SP tiles when a folder is given. A failed health state never emits a pulse: the next pulse says
there was a gap (NIST 2.0 status bit 1).

The precommitted value (the next pulse's local random value, NIST 2.0 "precommitmentValue") is secret until its
pulse is published. It is written in two phases around the log append, so a crash at any point resumes without
ever publishing a value twice or precommitting to one that is lost: staged (``.tmp``, fsync'd) before the pulse
that commits to it is appended, renamed into place after (``resume_secret`` reads both)."""

from __future__ import annotations

import datetime
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrng.atomic import fsync_folder
from qrng.errors import UsageError

__all__ = ["BeaconRun", "BeaconService", "pulses_in", "read_secret"]


@dataclass(frozen=True)
class BeaconRun:
    """How the beacon runs. ``pulses`` 0: until stopped. ``state_dir`` holds the precommitted secret (mode 700,
    checked by the caller). ``tiles``: a folder to publish the log into as C2SP tiles after each pulse."""

    period_s: float
    pulses: int
    log_path: Path
    state_dir: Path
    uri_prefix: str
    tiles: Path | None = None


def pulses_in(entries: list[bytes]) -> list[Any]:
    """The beacon pulses among a log's entries, in order."""
    from .beacon import Pulse
    out = []
    for e in entries:
        rec = json.loads(e)
        if rec.get("event") == "beacon.pulse":
            out.append(Pulse.from_json(rec["data"]))
    return out


def read_secret(path: Path) -> bytes | None:
    """A secret file's 64 bytes (hex), read without following a symlink; None if absent or not a secret."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read safely ({exc.strerror}); a symbolic link is never followed") from None
    with os.fdopen(fd) as f:
        text = f.read(200).strip()
    try:
        value = bytes.fromhex(text)
    except ValueError:
        return None
    return value if len(value) == 64 else None


CLOCK_TOLERANCE_S = 10  # a witness cosigns within this of a pulse's time stamp (cosignature times are seconds)


def clock_skew(pulse_time: datetime.datetime, cosigned: dict[str, int], timeout_s: float) -> str | None:
    """What the witnesses' clocks say of the beacon's (pure). Each cosignature (C2SP tlog-cosignature) carries the
    witness's own time: a pulse is emitted at its time stamp and cosigned within ``timeout_s`` after, so a
    cosignature more than CLOCK_TOLERANCE_S before the time stamp means the beacon's clock is ahead (it dates pulses
    in the future), and one more than the timeout plus the tolerance after means it is behind. Only a skew every
    witness agrees on is the beacon's own (one witness's clock can be wrong)."""
    if not cosigned:
        return None
    t = pulse_time.timestamp()
    offsets = {name: t - ts for name, ts in cosigned.items()}
    if all(o > CLOCK_TOLERANCE_S for o in offsets.values()):
        side = "ahead of"
    elif all(-o > CLOCK_TOLERANCE_S + timeout_s for o in offsets.values()):
        side = "behind"
    else:
        return None
    said = ", ".join(f"{name} {-o:+.0f} s" for name, o in sorted(offsets.items()))
    return (f"the beacon's clock is {side} every witness's (cosignature time minus pulse time stamp: {said}); "
            "pulses are dated by this clock: fix its time source (NTP)")


def _late(prev: Any, when: datetime.datetime, period_ms: int) -> bool:
    """NIST 2.0 status bit 2: the time since the previous pulse exceeds the period."""
    from .beacon import _when
    return round((when - _when(prev)).total_seconds() * 1000) > period_ms


class BeaconService:
    """One beacon: its pipeline, log, precommitted secret and witnesses. :meth:`serve` runs until ``pulses`` are
    emitted or :meth:`stop` is called (from a signal handler: it only sets a flag)."""

    def __init__(self, run: BeaconRun, config: Any, signer: Any, log_signer: Any, policy: Any = None,
                 say: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> None:
        self.run, self.config, self.signer, self.log_signer, self.policy = run, config, signer, log_signer, policy
        self.say, self.warn = say, warn
        self._stop = threading.Event()
        self.secret = run.state_dir / "next-local-random-value"

    def stop(self) -> None:
        self._stop.set()

    def _stage_secret(self, value: bytes) -> Path:
        tmp = self.secret.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value.hex())
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _commit_secret(self, staged: Path) -> None:
        staged.replace(self.secret)  # committed with the pulse that precommits to it
        fsync_folder(self.secret.parent)

    def serve(self) -> int:
        """Emit pulses; returns how many. Raises EntropyError when the pipeline fails its start-up tests."""
        from qrng.errors import EntropyError
        from qrng.pipeline import Pipeline

        from .beacon import _when, next_pulse, resume_secret
        from .log import AuditLog
        from .verify import parse_log
        r = self.run
        pipeline = Pipeline(self.config)
        try:
            pipeline.startup()
            history = pulses_in(parse_log(r.log_path.read_bytes()).entries) if r.log_path.exists() else []
            # the value the last pulse precommitted to, bound to the chain: never a value already published
            next_local, broken = resume_secret(history, read_secret(self.secret),
                                               read_secret(self.secret.with_suffix(".tmp")))
            gap = behind = False
            period_ms = int(r.period_s * 1000)
            emitted = 0
            with AuditLog(r.log_path, self.log_signer.name, self.log_signer) as log:
                while not self._stop.is_set() and (r.pulses == 0 or emitted < r.pulses):
                    slot = (int(time.time() * 1000) // period_ms + 1) * period_ms
                    self._stop.wait(max(0.0, slot / 1000 - time.time()))
                    if self._stop.is_set():
                        break
                    when = datetime.datetime.fromtimestamp(slot / 1000, datetime.UTC)
                    if history and when <= _when(history[-1]):
                        # the clock stepped back: a pulse is never dated before its predecessor; said once
                        if not behind:
                            behind = True
                            self.warn(f"beacon: the clock says {when.isoformat()}, not after the last pulse's time "
                                      f"stamp {history[-1].time_stamp}: no pulse until it is (the clock stepped "
                                      "back or is skewed)")
                        continue
                    behind = False
                    try:
                        if pipeline.failed:
                            pipeline.close()
                            pipeline = Pipeline(self.config)
                            pipeline.startup()
                        local = next_local if next_local is not None else pipeline.extracted(64)
                        upcoming = pipeline.extracted(64)
                    except EntropyError as exc:  # no pulse from a failed health state: a gap, said by the next
                        # pulse (the precommitted value, extracted while healthy, is kept for it)
                        self.warn(f"beacon: no pulse at {when.isoformat()}: {exc}")
                        gap = True
                        continue
                    if history and _late(history[-1], when, period_ms):
                        gap = True
                    pulse = next_pulse(history, when, period_ms, local, upcoming, self.signer, r.uri_prefix,
                                       gap=gap, precommit_broken=broken)
                    staged = self._stage_secret(upcoming)
                    with log.batch():
                        log.append("beacon", "beacon", "beacon.pulse", data=pulse.to_json())
                        note = log.checkpoint()
                    self._commit_secret(staged)
                    history.append(pulse)
                    next_local, gap, broken = upcoming, False, False
                    emitted += 1
                    said = self._witness(log, note, when) if self.policy is not None else ""
                    if r.tiles is not None:
                        from .tilesio import publish
                        publish(r.log_path, r.tiles)  # appends are written through (os.write): the file is whole
                    self.say(f"pulse {pulse.pulse_index} at {pulse.time_stamp}: output {pulse.output_value[:32]}... "
                             f"status {pulse.status_code}{said}")
            return emitted
        finally:
            pipeline.close()

    def _witness(self, log: Any, note: str, when: datetime.datetime) -> str:
        """Ask the policy's witnesses to cosign the new checkpoint; their cosignatures go into the log; their times
        say whether this beacon's clock is skewed (warned, with each witness's offset)."""
        from .merkle import TreeLevels
        from .note import parse_note
        from .verify import parse_log
        from .witness_client import collect_cosignatures
        tree = TreeLevels(parse_log(self.run.log_path.read_bytes()).leaf_hashes)
        # consistency proofs to this tree (bound now: a witness answering late never sees a newer tree)
        proofs = lambda old: tree.consistency_proof(old, tree.size)  # noqa: E731
        timeout = min(10.0, self.run.period_s)
        lines, outcomes, met = collect_cosignatures(note, self.policy, proofs, timeout=timeout)
        cosigned: dict[str, int] = {}
        for ln in lines:
            sig = next(s for s in parse_note(note + ln)[1] if s.line() == ln)
            log.add_cosignature(log.size, sig)
            cosigned[sig.name] = struct.unpack(">Q", sig.signature[:8])[0]  # the witness's time (verified)
        skew = clock_skew(when, cosigned, timeout)
        if skew is not None:
            self.warn(f"beacon: pulse at {when.isoformat()}: {skew}")
        return f", witnessed by {sum(o.status == 'cosigned' for o in outcomes)}" + ("" if met else " (quorum NOT met)")
