"""What a verifier says it checked: every check is ``passed``, ``failed`` or ``not checked`` (with why), and says
whether the verdict needs it. Pure.

The rule every ``verify`` command follows (README, "What a verdict means"):

* exit 0, "verified": every *required* check passed, with keys the auditor supplied;
* exit 1: a check failed (verification raises at the first failure, naming it);
* exit 4, "consistent, not independently verified": nothing failed, but a required check was not made (no witness
  keys given while the policy recorded in the log asks for cosignatures; the log key taken from the folder being
  verified; a paper that this version cannot re-render). A check that was not made never counts as passed.

Which witness cosignatures a log needs is read from the log itself: a ceremony records its policy's requirement in
its ``ceremony.started`` entry (``witness_quorum``, and the C2SP tlog-policy text when witnesses are reached over
tlog-witness); logs written before that recorded the quorum in ``witness.signoff.requested``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import AuditError, QuorumNotMet
from .note import Verifier

__all__ = ["NOT_CHECKED", "WITNESS_HOW", "Check", "NotIndependentlyVerified", "RecordedRequirement", "Verdict",
           "recorded_requirement", "witness_check"]

PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"


@dataclass(frozen=True)
class Check:
    name: str
    how: str       # the method, with the specification it follows
    result: str    # passed | failed | not checked
    detail: str    # what was found; for "not checked", why not
    required: bool = True  # whether exit 0 needs this check to have passed

    def __post_init__(self) -> None:
        if self.result not in (PASSED, FAILED, NOT_CHECKED):
            raise ValueError(f"check {self.name}: result {self.result!r}")

    def line(self) -> str:
        why = f" ({self.detail})" if self.result == NOT_CHECKED else f": {self.detail}"
        extra = "" if self.required or self.result != NOT_CHECKED else " [not required]"
        return f"{self.result.upper():12} {self.name}{why}{extra}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "result": self.result, "detail": self.detail, "required": self.required}


class NotIndependentlyVerified(AuditError):
    """Nothing failed, but a check the verdict needs was not made (exit 4). Carries the checks."""

    def __init__(self, checks: tuple[Check, ...]) -> None:
        missing = [c for c in checks if c.required and c.result == NOT_CHECKED]
        super().__init__("consistent, but not independently verified: " + "; ".join(
            f"{c.name} not checked ({c.detail})" for c in missing))
        self.checks = checks


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def complete(self) -> bool:
        """Every required check passed (and, since verification raises, none failed)."""
        return all(c.result == PASSED for c in self.checks if c.required)

    def raise_if_incomplete(self) -> None:
        if not self.complete:
            raise NotIndependentlyVerified(self.checks)


@dataclass(frozen=True)
class RecordedRequirement:
    """The witness cosignatures the log's own policy asks of its latest checkpoint."""

    quorum: int                 # distinct witness keys that must have cosigned
    witnesses: tuple[str, ...]  # the witness names the ceremony script listed
    tlog_policy: str | None     # the C2SP tlog-policy text the ceremony collected its quorum under, if any
    source: str                 # where in the log this was read, for messages
    recorded: bool = True       # False: the log records no witness policy at all (not a ceremony log)

    def describe(self) -> str:
        if self.quorum == 0:
            return f"the policy recorded in the log ({self.source}) requires no witness cosignature"
        return (f"the policy recorded in the log ({self.source}) requires {self.quorum} witness cosignature"
                + ("s" if self.quorum != 1 else "") + (f" ({', '.join(self.witnesses)})" if self.witnesses else ""))


def recorded_requirement(entries: Iterable[bytes]) -> RecordedRequirement:
    """The requirement a ceremony log records (see the module doc); a log that records none (not a ceremony log:
    a daemon's or a beacon's) requires no cosignature of its own, which the verdict says."""
    start: dict[str, Any] | None = None
    signoff_quorum: int | None = None
    for n, raw in enumerate(entries):
        if b"ceremony.started" not in raw and b"witness.signoff.requested" not in raw:
            continue  # most entries: not parsed again (a million-entry log is read in one pass)
        try:
            e = json.loads(raw)
        except ValueError:
            continue  # parse_log has already refused a record that is not JSON
        if not isinstance(e, dict):
            continue
        data = e.get("data") if isinstance(e.get("data"), dict) else {}
        assert isinstance(data, dict)
        if e.get("event") == "ceremony.started" and start is None:
            start = {**data, "_entry": n}
        elif e.get("event") == "witness.signoff.requested" and isinstance(data.get("quorum"), int):
            signoff_quorum = max(signoff_quorum or 0, int(data["quorum"]))
    if start is None:
        return RecordedRequirement(0, (), None, "no ceremony.started entry: the log records no witness policy",
                                   recorded=False)
    names = tuple(str(w) for w in start.get("witnesses", []) or [] if isinstance(w, str)) \
        if isinstance(start.get("witnesses"), list) else ()
    policy = start.get("witness_policy") if isinstance(start.get("witness_policy"), str) else None
    q = start.get("witness_quorum")
    if isinstance(q, int) and not isinstance(q, bool) and q >= 0:
        return RecordedRequirement(q, names, policy, f"entry {start['_entry']}, ceremony.started")
    if signoff_quorum is not None:
        return RecordedRequirement(signoff_quorum, names, policy, "witness.signoff.requested")
    return RecordedRequirement(0, names, policy, f"entry {start['_entry']}, ceremony.started, records no quorum",
                               recorded=False)


WITNESS_HOW = ("The latest checkpoint's cosignatures (c2sp.org/tlog-cosignature) are verified with the witness keys "
               "the auditor gives; distinct keys are counted (never key names: C2SP tlog-policy identifies witnesses "
               "by their public keys) against the quorum the log's policy recorded, and a recorded or given "
               "tlog-policy's quorum rule must hold.")


def witness_check(cosigners: tuple[Verifier, ...], cosignature_lines: int, size: int, req: RecordedRequirement,
                  keys_given: int, quorum: int | None = None, policy: object = None, how: str = WITNESS_HOW,
                  name: str = "Witness cosignatures") -> Check:
    """The witness check of a verdict. ``cosigners`` are the keys given by the auditor (``keys_given`` of them)
    whose cosignatures of the latest checkpoint (tree ``size``) verified; ``quorum`` an explicit count
    (``--quorum``) on top of the recorded one; ``policy`` a tlog-policy the auditor gave. A log that records no
    policy, verified with neither --quorum nor a policy, needs every witness key given. Raises QuorumNotMet when
    the keys given do not meet the requirement; without keys the check is not made (and required when anything
    asks for a cosignature)."""
    from .policy import Policy, parse_policy
    from .verify import key_names
    need = max(req.quorum, quorum or 0)  # --quorum adds to the recorded requirement, never relaxes it
    if not req.recorded and quorum is None and policy is None:
        need = keys_given  # the auditor named the witnesses that must have cosigned
    asked = need > 0 or (isinstance(policy, Policy) and policy.quorum != "none") or req.tlog_policy is not None
    if not keys_given:
        return Check(name, how, NOT_CHECKED, f"no witness keys given; {req.describe()}"
                     + (f"; --quorum {quorum}" if quorum else "")
                     + f"; the latest checkpoint carries {cosignature_lines} cosignature line(s)", required=asked)
    got = ", ".join(key_names(cosigners)) or "none"
    why = req.describe() if req.recorded else f"{req.describe()}: every witness key given must have cosigned"
    if len(cosigners) < need:
        raise QuorumNotMet(f"the latest checkpoint (size {size}) has {len(cosigners)} cosignature(s) by the witness "
                           f"keys given ({got}); {need} are required ({why})")
    rules: list[str] = []
    if req.tlog_policy is not None:
        recorded = parse_policy(req.tlog_policy, f"the tlog-policy recorded in the log ({req.source})")
        if not recorded.met_by(cosigners):
            raise QuorumNotMet(f"the cosignatures by the witness keys given ({got}) do not meet the quorum rule of "
                                f"the tlog-policy recorded in the log ({recorded.quorum})")
        rules.append(f"the recorded tlog-policy's rule ({recorded.quorum}) holds")
    if isinstance(policy, Policy):
        if not policy.met_by(cosigners):
            raise QuorumNotMet(f"the cosignatures by the witness keys given ({got}) do not meet the quorum of the "
                                f"tlog-policy given ({policy.quorum})")
        rules.append(f"the given tlog-policy's quorum ({policy.quorum}) holds")
    return Check(name, how, PASSED, f"{len(cosigners)} distinct witness key(s) given by the auditor cosigned the "
                 f"latest checkpoint ({got}); {need} required ({why})" + "".join(f"; {x}" for x in rules))
