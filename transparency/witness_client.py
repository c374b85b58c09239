"""Collecting cosignatures from tlog-witnesses (https://c2sp.org/tlog-witness) for a signed checkpoint, as the
log: add-checkpoint to every witness of a C2SP tlog-policy that has a URL, in parallel, each with a timeout and
retries; a 409 is answered by sending again from the witness's size with the consistency proof from there; the
cosignature lines that come back are verified against that witness's key before they count; it returns as soon
as the policy's quorum is met (or when every witness has answered or timed out), with what each witness said."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from qrng.asciinum import is_ascii_decimal

from .errors import AuditError, SignatureError
from .note import Checkpoint, Verifier, parse_note, verify_note
from .policy import Policy, PolicyWitness
from .verify import signature_line_ids

__all__ = ["WitnessOutcome", "collect_cosignatures"]


@dataclass(frozen=True)
class WitnessOutcome:
    name: str
    status: str          # cosigned, refused, unreachable
    detail: str
    lines: tuple[str, ...] = ()


def _post(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url.rstrip("/") + "/add-checkpoint", data=body, method="POST",
                                 headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), r.read(65536)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(65536)


def _one(w: PolicyWitness, note: str, cp: Checkpoint, proof_from: Callable[[int], list[bytes]], old: int,
         timeout: float, retries: int) -> WitnessOutcome:
    assert w.url is not None
    attempt = 0
    conflicts = 0
    while True:
        proof = [] if old in (0, cp.size) else proof_from(old)
        body = (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note).encode()
        try:
            status, answer = _post(w.url, body, timeout)
        except (OSError, urllib.error.URLError) as exc:
            attempt += 1
            if attempt > retries:
                return WitnessOutcome(w.name, "unreachable", str(getattr(exc, "reason", exc)))
            time.sleep(min(2.0, 0.1 * 2 ** attempt))
            continue
        if status == 409 and conflicts < 3:
            text = answer.decode("ascii", "replace").strip()
            if not is_ascii_decimal(text) or int(text) > cp.size:
                return WitnessOutcome(w.name, "refused", f"409 with size {text!r}: the witness has seen a larger "
                                                         "tree of this log than this checkpoint")
            old, conflicts = int(text), conflicts + 1
            continue
        if status != 200:
            return WitnessOutcome(w.name, "refused", f"HTTP {status}: {_quoted(answer)}")
        try:
            mine = witness_lines(note, answer, w.key)
        except (SignatureError, AuditError) as exc:
            return WitnessOutcome(w.name, "refused", f"its answer does not verify with its key: {exc}")
        return WitnessOutcome(w.name, "cosigned", f"cosigned size {cp.size}" + (" (after 409)" if conflicts else ""),
                              mine)


def witness_lines(note: str, answer: bytes, key: Verifier) -> tuple[str, ...]:
    """The cosignature lines of a witness's 200 answer that are its own and verify with its key (pure). Lines of
    other keys are dropped, also one that shares its key name (a bogus line placed first is never taken for it);
    raises SignatureError if none of its own verifies, or if one of its own does not (tlog-witness: the client
    verifies the answer with the witness keys it trusts)."""
    lines = tuple(ln + "\n" for ln in answer.decode("utf-8", "replace").split("\n") if ln.startswith("\u2014 "))
    verify_note(note + "".join(lines), [key])
    # by key (name and key ID), never by name alone: another witness may share the name
    return tuple(ln for ln in lines if (key.name, key.key_id) in signature_line_ids([ln]))


def collect_cosignatures(note: str, policy: Policy, proof_from: Callable[[int], list[bytes]],
                         known_sizes: dict[str, int] | None = None, timeout: float = 10.0,
                         retries: int = 2) -> tuple[list[str], list[WitnessOutcome], bool]:
    """(cosignature lines, what each witness said, whether the policy's quorum is met)."""
    cp = Checkpoint.parse(parse_note(note)[0])
    known_sizes = known_sizes or {}
    done: list[WitnessOutcome] = []
    cond = threading.Condition()
    targets = [w for w in policy.witnesses.values() if w.url]

    def run(w: PolicyWitness) -> None:
        try:
            out = _one(w, note, cp, proof_from, known_sizes.get(w.name, 0), timeout, retries)
        except Exception as exc:  # noqa: BLE001 - one witness's failure is its outcome, not the caller's
            out = WitnessOutcome(w.name, "unreachable", f"{type(exc).__name__}: {exc}")
        with cond:
            done.append(out)
            cond.notify_all()

    for w in targets:
        threading.Thread(target=run, args=(w,), daemon=True).start()
    deadline = time.monotonic() + timeout * (retries + 2)
    with cond:
        while len(done) < len(targets):
            if policy.satisfied({o.name for o in done if o.status == "cosigned"}):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(left)
        outcomes = list(done)
    cosigned = {o.name for o in outcomes if o.status == "cosigned"}
    lines = [ln for o in outcomes for ln in o.lines]
    for w in targets:
        if w.name not in {o.name for o in outcomes}:
            outcomes.append(WitnessOutcome(w.name, "unreachable", "no answer before the quorum was met or time ran "
                                                                  "out"))
    return lines, outcomes, policy.satisfied(cosigned)


def _quoted(answer: bytes, limit: int = 120) -> str:
    """A peer's error body as one short printable line (an HTML page or terminal escapes are not echoed as such)."""
    text = answer.decode("utf-8", "replace").strip().splitlines()[0] if answer.strip() else "(empty)"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit] + ("..." if len(text) > limit else "")
