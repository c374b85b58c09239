"""The transcript: what the verified log says happened, as people read it. A pure function of the log's bytes and
the result of verifying them with the log key (:func:`transparency.verify.verify_log`); nothing on paper comes from
anywhere else, and nothing depends on which witness keys the renderer holds (the cover names the cosignature lines
the log records). So the same log always renders to the same paper, and ``qrng ceremony verify`` re-renders it to
prove the paper people signed unaltered."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from qrng.errors import UsageError
from transparency.verify import LogView, VerifyResult, parse_log

from ..steps import REGISTRY
from ..steps._certs import dn
from ..steps.base import _default_record as default_record
from .pgp import pgp_words
from .vocabulary import Fact, LogEvent, Section, StepLog

__all__ = ["CertRow", "CheckpointFacts", "EstimatorChart", "HealthChart", "KeyRow", "StepPaper", "Transcript",
           "checkpoint_facts", "transcript"]


@dataclass(frozen=True)
class CheckpointFacts:
    origin: str
    size: int
    root_b64: str
    root_words: str  # PGP words of the 32-byte root hash
    note: str        # the signed note with its cosignatures, as it is in the log
    cosigners: tuple[str, ...]  # the names on its cosignature lines, as the log records them


@dataclass(frozen=True)
class KeyRow:
    label: str
    type: str
    key_id: str
    fingerprint: str
    step: str


@dataclass(frozen=True)
class CertRow:
    kind: str  # certificate | CRL
    subject: str
    serial: str
    not_before: str
    not_after: str
    fingerprint: str
    file: str
    step: str


@dataclass(frozen=True)
class EstimatorChart:
    """SP 800-90B estimators per sample (a bit-string estimate times the bits per symbol) against the claim."""

    bars: tuple[tuple[str, float], ...]
    claimed: float
    assessed: float
    step: str


@dataclass(frozen=True)
class HealthChart:
    run_lengths: tuple[tuple[int, int], ...]
    apt_counts: tuple[tuple[int, int], ...]
    rct_cutoff: int
    apt_cutoff: int
    window: int
    samples: int
    step: str


@dataclass(frozen=True)
class StepPaper:
    number: int
    id: str
    type: str
    phase: str
    started: str
    finished: str
    actors: tuple[str, ...]
    outcome: str  # completed | FAILED | started, not completed
    section: Section
    files: tuple[tuple[str, str, str], ...]  # name, SHA-256, PGP words of its first 4 bytes


@dataclass(frozen=True)
class Transcript:
    ceremony: str
    simulator: bool
    cover: tuple[Fact, ...]
    digests: tuple[Fact, ...]
    roles: tuple[Fact, ...]
    witnesses: tuple[str, ...]
    checkpoint: CheckpointFacts
    keys: tuple[KeyRow, ...]
    certificates: tuple[CertRow, ...]
    entropy: tuple[Fact, ...]
    estimators: tuple[EstimatorChart, ...]
    health: tuple[HealthChart, ...]
    steps: tuple[StepPaper, ...]
    events: tuple[Fact, ...]  # ceremony-level events: resumptions, quarantined log tails


def _source(label: str, simulator: bool) -> str:
    return label + (" - NOT A PHYSICAL DEVICE" if simulator and "not a physical device" not in label else "")


def checkpoint_facts(v: VerifyResult) -> CheckpointFacts:
    return CheckpointFacts(v.latest.origin, v.latest.size, base64.b64encode(v.latest.root).decode(),
                           pgp_words(v.latest.root), v.latest_note, v.cosignature_names)


def _steps(entries: list[dict[str, Any]]) -> list[StepLog]:
    order: dict[str, list[LogEvent]] = {}
    types: dict[str, str] = {}
    for e in entries:
        if e["step"] in ("ceremony", "transcript"):
            continue
        order.setdefault(e["step"], []).append(LogEvent(e["event"], e["actor"], e["time"], e.get("data", {}),
                                                        e.get("files", {})))
        if e["event"] == "step.started":
            types[e["step"]] = e["data"].get("type", "")
    return [StepLog(sid, types.get(sid, ""), tuple(evs)) for sid, evs in order.items()]


def _paper(n: int, log: StepLog) -> StepPaper:
    kind = REGISTRY.get(log.type)
    section = kind.record(log) if kind is not None else default_record(log)
    files: dict[str, str] = {}
    for e in log.events:
        files.update(e.files)
    outcome = ("completed" if log.has("step.completed") else "FAILED" if log.has("step.failed")
               else "started, not completed")
    if log.has("step.failed") and not log.has("step.completed"):
        section = Section(f"The step FAILED: {log.data('step.failed').get('error', '')}", section.facts)
    actors = tuple(dict.fromkeys(e.actor for e in log.events))
    return StepPaper(n, log.id, log.type, kind.phase if kind else "", log.events[0].time[:19].replace("T", " "),
                     log.events[-1].time[:19].replace("T", " "), actors, outcome, section,
                     tuple((name, d, pgp_words(bytes.fromhex(d)[:4])) for name, d in sorted(files.items())))


def _tables(entries: list[dict[str, Any]]) -> tuple[list[KeyRow], list[CertRow], list[Fact], list[EstimatorChart],
                                                     list[HealthChart]]:
    keys: list[KeyRow] = []
    certs: list[CertRow] = []
    entropy: list[Fact] = []
    est: list[EstimatorChart] = []
    health: list[HealthChart] = []
    for e in entries:
        d, ev, step = e.get("data", {}), e["event"], e["step"]
        files = list(e.get("files", {}))
        if ev in ("key.generated", "key.adopted"):
            keys.append(KeyRow(d["label"], d["key"], d["key_id"], d["public_key_sha256"], step))
        elif ev == "certificate.issued":
            certs.append(CertRow("certificate", dn(d["subject"]), d["serial"], d.get("not_before", ""),
                                 d.get("not_after", ""), d.get("fingerprint_sha256", ""), ", ".join(files), step))
        elif ev == "crl.issued":
            certs.append(CertRow("CRL", dn(d["issuer"]), str(d.get("crl_number", "")), d.get("this_update", ""),
                                 d.get("next_update") or "", d.get("fingerprint_sha256", ""), ", ".join(files), step))
        elif ev == "entropy.committed":
            entropy.append(Fact(f"Raw samples ({step})", f"{d['samples']:,} of {d['bits_per_sample']} bits"))
        elif ev == "entropy.extracted":
            entropy.append(Fact(f"Entropy credited ({step})", f"{d['entropy_credited_bits']:,.0f} bits, "
                                                              f"{d['extracted_bytes']:,} bytes extracted"))
        elif ev == "entropy.estimated":
            h, claimed = d["h_assessed"], d["claimed_min_entropy"]
            entropy.append(Fact(f"SP 800-90B estimate ({step})",
                                f"{h:.4f} bits per sample against the claimed {claimed:g}: "
                                + ("the claim holds" if h >= claimed else f"{claimed - h:.4f} below the claim")))
            bits = d["bits_per_symbol"]
            bars = tuple(sorted(((name.replace(" (bit string)", f" (bit string x{bits})"),
                                  v * bits if name.endswith("(bit string)") else v)
                                 for name, v in d["estimators"].items()), key=lambda b: b[1]))
            est.append(EstimatorChart(bars, claimed, h, step))
        elif ev == "health.statistics":
            health.append(HealthChart(tuple(map(tuple, d["run_lengths"])), tuple(map(tuple, d["apt_counts"])),
                                      d["rct_cutoff"], d["apt_cutoff"], d["window"], d["samples"], step))
    return keys, certs, entropy, est, health


def transcript(log: LogView | bytes, verified: VerifyResult) -> Transcript:
    """The transcript of a verified log (``verified`` is what verify_log returned for it); pass the LogView the
    verification parsed, so the log is parsed once per run."""
    view = log if isinstance(log, LogView) else parse_log(log)
    entries = [json.loads(x) for x in view.entries]
    start = next((e for e in entries if e["event"] == "ceremony.started"), None)
    if start is None:
        raise UsageError("the log has no ceremony.started entry: not a ceremony log")
    m: dict[str, Any] = start["data"]
    token = m.get("token", {})
    simulator = bool(m.get("simulator"))
    cover = (Fact("Ceremony", start.get("ceremony", "")),
             Fact("Started", start["time"][:19].replace("T", " ") + " UTC"),
             Fact("Last entry", entries[-1]["time"][:19].replace("T", " ") + " UTC"),
             Fact("Policy", m.get("policy", "")), Fact("Profile", m.get("profile", "")),
             Fact("Token", f"{token.get('label', '')}: {token.get('manufacturer', '')} {token.get('model', '')}, "
                           f"serial {token.get('serial', '')}"),
             Fact("Entropy source", _source(m.get("entropy_source", ""), simulator)),
             Fact("Log verifier key", m.get("log_key", ""), digest=True))
    digests = (Fact("Script", str(m.get("script", "")).rsplit("/", 1)[-1]),
               Fact("Script SHA-256", m.get("script_sha256", ""), digest=True),
               Fact("Script PGP words", pgp_words(bytes.fromhex(m.get("script_sha256", "")))),
               Fact("Policy SHA-256", m.get("policy_sha256", ""), digest=True),
               Fact("Policy PGP words", pgp_words(bytes.fromhex(m.get("policy_sha256", "")))))
    roles = tuple(Fact(k.replace("_", " "), v) for k, v in m.get("roles", {}).items())
    keys, certs, entropy, est, health = _tables(entries)
    events = []
    for e in entries:
        if e["event"] == "ceremony.resumed":
            events.append(Fact(e["time"][:19].replace("T", " "), "the ceremony was resumed after an interruption; "
                               f"{len(e['data'].get('completed_steps', []))} step(s) were already complete"))
        elif e["event"] == "log.tail_unconfirmed":
            events.append(Fact(e["time"][:19].replace("T", " "),
                               f"{e['data']['entries']} log entries after the last signed checkpoint were set aside "
                               f"in {e['data']['folder']} and their steps redone"))
    steps = tuple(_paper(n, s) for n, s in enumerate(_steps(entries), 1))
    return Transcript(start.get("ceremony", ""), simulator, cover, digests, roles, tuple(m.get("witnesses", [])),
                      checkpoint_facts(verified), tuple(keys), tuple(certs), tuple(entropy), tuple(est),
                      tuple(health), steps, tuple(events))
