"""Runs a validated ceremony plan: one log entry per event, a signed checkpoint after every step. The steps are
the registry's (ceremony.steps); this runner is their StepContext and knows no step type by name.

Resume: the audit log is the state. A step with ``step.completed`` in the log is done; its results are read
back from the log. A step that was ``step.started`` but not completed is run again, and a key generation
adopts the key it created (same label and CKA_ID, drawn before generation and logged) instead of making a
second one. Outputs are staged, recorded with their digests, then linked into place: never overwritten.

The environment variable QRNG_CEREMONY_TEST_KILL=<step-id>:<point> (point: started, completed, placed,
checkpointed) sends SIGKILL to this process at that boundary. It is a test hook for crash recovery.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrng import __version__
from qrng.atomic import atomic_write
from qrng.errors import EntropyError, NativeUnavailable, ResourceBusy
from qrng.lockfile import hold
from qrng.pipeline import Pipeline
from transparency.log import AuditLog
from transparency.note import Signer, hsm_signer, load_ed25519_signer
from transparency.verify import LogView, parse_log, verify_log

from .errors import CeremonyError, HsmError, OutputUnwritable, Refused, StepFailed
from .hsmapi import HsmApi
from .outputs import OutputWriter
from .plan import Plan
from .resume import ResumeState, resume_state
from .steps import REGISTRY, Step

__all__ = ["Ceremony", "RunResult", "log_origin"]

Progress = Callable[[str], None]


def log_origin(ceremony: str, prefix: str = "") -> str:
    """The checkpoint origin: ``qrng-ceremony/<ceremony>``, or with the profile's ``log_url_prefix`` the URL prefix
    (without scheme) where the log's tiles are served, as C2SP tlog-tiles recommends: ``<prefix>/<ceremony>``."""
    return f"{prefix.rstrip('/')}/{ceremony}" if prefix else f"qrng-ceremony/{ceremony}"


@dataclass
class RunResult:
    output: Path
    log: Path
    log_key: str
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    tree_size: int = 0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# a folder that stopped taking writes: full, over quota, read-only, failing
_UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def _kill_hook(step: str, point: str) -> None:
    if os.environ.get("QRNG_CEREMONY_TEST_KILL") == f"{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Ceremony:
    """The runner, and the StepContext every step receives."""

    pipeline: Pipeline
    log: AuditLog

    def __init__(self, plan: Plan, hsm: HsmApi, progress: Progress | None = None,
                 papers: tuple[str, ...] = ()) -> None:
        self.plan = plan
        self.script = plan.script
        self.hsm = hsm
        self._progress = progress or (lambda m: None)
        self.out = self.script.output
        self.writer = OutputWriter(self.out)
        self.results: dict[str, dict[str, Any]] = {}
        self.extracted = b""
        self.origin = log_origin(self.script.ceremony, self.plan.profile.log_url_prefix)
        self.signer = self._log_signer()
        self._unconfirmed: dict[str, Any] = {}
        self.papers = papers  # transcript formats written after each run (".html", ".pdf")

    def progress(self, msg: str) -> None:
        self._progress(msg)

    def checkpoint(self) -> None:
        self.log.checkpoint()

    # --- set-up --------------------------------------------------------------------------------------------
    def _log_signer(self) -> Signer:
        prof = self.plan.profile
        if prof.log_key_label:
            der, sign = self.hsm.log_signer(prof.log_key_label)
            return hsm_signer(self.origin, der, sign)  # Ed25519 (type 0x01) or ECDSA P-256 (type 0x02)
        return _rename_file_key(Path(prof.log_key_file).read_text(), self.origin)

    def _script_digest(self) -> str:
        return _sha(self.script.path.read_bytes())

    def _load_state(self) -> ResumeState:
        """The resume state (pure: ceremony.resume) from the existing log, after verifying it up to its last
        signed checkpoint. Entries after that checkpoint are unconfirmed: they are moved out of the log into a
        side file (kept as evidence, its digest logged) with the outputs only they record, and their steps are
        redone; only their pre-drawn values (a key's CKA_ID) are carried over, so a redone key step adopts the
        key it may have made instead of making a second one."""
        path = self.out / "audit.log"
        if not path.exists():
            return resume_state([], self._script_digest(), str(self.script.path))
        data = path.read_bytes()
        data = data[:data.rfind(b"\n") + 1]  # a torn tail is recovered (and recorded) when the log is reopened
        view = parse_log(data)
        signed_size = view.checkpoints[-1].position if view.checkpoints else 0
        lines = data.split(b"\n")[:-1]
        kept: list[bytes] = []
        tail: list[bytes] = []
        for x in lines:
            rec = json.loads(x)
            (tail if rec.get("kind") == "entry" and rec["seq"] >= signed_size else kept).append(x)
        if view.checkpoints:
            verify_log(b"".join(x + b"\n" for x in kept), [self.signer.verifier], origin=self.origin)
        signed_entries = list(view.entries[:signed_size])
        tail_entries = list(view.entries[signed_size:])
        state = resume_state(signed_entries, self._script_digest(), f"{self.script.path} (log {path})", tail_entries)
        if tail:
            self._quarantine(path, kept, tail, signed_entries)
        return state

    def _quarantine(self, path: Path, kept: list[bytes], tail: list[bytes], signed_entries: list[bytes]) -> None:
        confirmed: set[str] = set()
        for line in signed_entries:
            confirmed.update(json.loads(line).get("files", {}))
        first = json.loads(tail[0])["seq"]
        side = self.out / f".unconfirmed-{first}"
        blob = b"".join(x + b"\n" for x in tail)
        named = [name for x in tail for name in json.loads(x).get("files", {})]
        moved = self.writer.quarantine(side.name, blob, named, confirmed)
        atomic_write(path, b"".join(x + b"\n" for x in kept), overwrite=True)  # the log without its tail
        self._unconfirmed = {"entries": len(tail), "first_seq": first, "folder": side.name,
                             "tail_sha256": _sha(blob), "outputs_moved": moved}
        self.progress(f"{len(tail)} log entries after the last signed checkpoint are unconfirmed: moved to "
                      f"{side} and redone")

    def event(self, step: str, event: str, data: dict[str, Any] | None = None,
              files: dict[str, str] | None = None, actor: str = "") -> None:
        self.log.append(step, actor or self.script.roles.get("operator", "operator"), event, files, data)

    def qrng(self, n: int) -> bytes:
        return self.pipeline.generate(n)

    # --- outputs: one writer ---------------------------------------------------------------------------------
    def stage(self, step: str, name: str, data: bytes) -> str:
        return self.writer.stage(step, name, data)

    def place(self, step: str, outputs: dict[str, str]) -> None:
        self.writer.place(step, outputs)

    # --- run -------------------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run or resume the ceremony, holding the folder's lock throughout. A refusal before any step acts
        (folder in use, a key label already on the token) leaves nothing behind that this run created."""
        created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            with hold(self.out / ".lock", f"ceremony folder {self.out}"):
                return self._run_locked()
        except OSError as exc:
            if exc.errno not in _UNWRITABLE:
                raise
            where = exc.filename or self.out
            raise OutputUnwritable(
                f"{self.script.path.name}: cannot write {where}: {exc.strerror}. The run stopped; what was written "
                "before is intact (every file and log record is written whole or not at all). Make room (or make "
                "the folder writable) and run the same command to resume.") from None
        except (Refused, ResourceBusy):
            if created and {p.name for p in self.out.iterdir()} <= {".lock"}:
                (self.out / ".lock").unlink(missing_ok=True)
                self.out.rmdir()
            raise

    def _run_locked(self) -> RunResult:
        done = parse_log((self.out / "audit.log").read_bytes()) if (self.out / "audit.log").exists() else None
        if done is not None and self._sealed(done) and self._complete(done):
            self.progress("ceremony already completed; nothing to do (verify it with qrng ceremony verify)")
            self._papers_or_say_why(only_missing=True)
            return RunResult(self.out, self.out / "audit.log", str(self.signer.verifier),
                             steps_skipped=[s.id for s in self.script.steps], tree_size=len(done.entries))
        state = self._load_state()
        completed, started, carried = state.completed, state.started, state.carried
        fresh = state.fresh
        for step in self.script.steps:  # before the log or any step acts
            check = REGISTRY[step.type].preflight
            if check is not None and step.id not in started and step.id not in carried:
                check(self, step)
        self.log = AuditLog(self.out / "audit.log", self.origin, self.signer, ceremony=self.script.ceremony,
                            recover=True)
        if not (self.out / "log.pub").exists():  # all or nothing: a run killed here leaves none, not an empty one
            atomic_write(self.out / "log.pub", (str(self.signer.verifier) + "\n").encode())
        result = RunResult(self.out, self.out / "audit.log", str(self.signer.verifier))
        opened = False
        try:
            if fresh:
                self.event("ceremony", "ceremony.started", {
                    "script": str(self.script.path), "script_sha256": self._script_digest(),
                    "policy": self.plan.policy.name, "policy_sha256": _sha(self.plan.policy.path.read_bytes()),
                    "profile": self.plan.profile.name, "token": self.hsm.token_info(),
                    "entropy_source": self.plan.source_label, "simulator": "SIMULATOR" in self.plan.source_label,
                    "log_key": str(self.signer.verifier), "roles": self.script.roles,
                    "witnesses": list(self.script.witnesses), **self._started_facts()})
                self.log.checkpoint()
            else:
                self.event("ceremony", "ceremony.resumed", {"completed_steps": sorted(completed)})
            if self._unconfirmed:
                self.event("ceremony", "log.tail_unconfirmed", self._unconfirmed)
                self.log.checkpoint()
            self.pipeline = Pipeline(self.plan.entropy)
            opened = True
            for step in self.script.steps:
                kind = REGISTRY[step.type]
                if step.id in completed:
                    self.results[step.id] = completed[step.id].get("results", {})
                    self.place(step.id, completed[step.id].get("outputs", {}))
                    result.steps_skipped.append(step.id)
                    self.progress(f"[{step.id}] already completed; skipped")
                    if kind.on_resume is not None:
                        kind.on_resume(self, step)
                    continue
                self._run_step(step, started.get(step.id), carried.get(step.id))
                result.steps_run.append(step.id)
            self.log.checkpoint()
            result.tree_size = self.log.size
        except StepFailed:
            self.log.close()
            self._papers_or_say_why()  # the transcript of a failed run says where it stopped
            raise
        finally:
            if opened:
                self.pipeline.close()
            self.log.close()
        self._papers_or_say_why()
        return result

    def _papers_or_say_why(self, only_missing: bool = False) -> None:
        """Papers are a rendering of the log: a failure to render them never turns a completed (or failed) run
        into another error; it is said, and `qrng ceremony run` again writes the missing ones."""
        try:
            self._write_papers(only_missing)
        except Exception as exc:  # noqa: BLE001 - the log is the record; this is reported, not raised
            self.progress(f"transcript not written ({type(exc).__name__}: {exc}); run the ceremony again to write it")

    def _complete(self, view: LogView) -> bool:
        """Every step completed, as far as the log's signed part says."""
        signed = view.entries[:view.checkpoints[-1].position] if view.checkpoints else []
        state = resume_state(list(signed), self._script_digest(), str(self.script.path))
        return all(s.id in state.completed for s in self.script.steps)

    def _sealed(self, view: LogView) -> bool:
        """The last checkpoint covers every entry and, if witnesses sign off, carries their quorum."""
        if not view.checkpoints or view.checkpoints[-1].position != len(view.entries):
            return False
        kinds = [REGISTRY[s.type] for s in self.script.steps]
        return all(k.sealed(self.plan, view.checkpoints[-1].cosignatures) for k in kinds if k.sealed is not None)

    def _started_facts(self) -> dict[str, Any]:
        """What the step kinds of this script record in ceremony.started (a quorum of 0: no step seals with
        witnesses; transparency.verdict.recorded_requirement reads it back)."""
        facts: dict[str, Any] = {"witness_quorum": 0}
        for kind in {REGISTRY[s.type].name: REGISTRY[s.type] for s in self.script.steps}.values():
            if kind.started is not None:
                facts |= kind.started(self.plan)
        return facts

    def _run_step(self, step: Step, started: dict[str, Any] | None, carried: dict[str, Any] | None = None) -> None:
        kind = REGISTRY[step.type]
        self.progress(f"[{step.id}] {step.type} ...")
        if started is not None:
            prepared = started
            self.event(step.id, "step.resumed", {"type": step.type})
        elif carried is not None:
            prepared = carried
            self.event(step.id, "step.started", {"type": step.type, **prepared, "carried_from_unconfirmed": True})
        else:
            prepared = kind.prepare(self, step)
            self.event(step.id, "step.started", {"type": step.type, **prepared})
        _kill_hook(step.id, "started")
        try:
            outputs, results = kind.run(self, step, prepared)
        except OSError as exc:
            if exc.errno in _UNWRITABLE:  # the folder, not the step: no step.failed; run() says how to resume
                raise
            self.event(step.id, "step.failed", {"error": str(exc)})
            self.log.checkpoint()
            raise StepFailed(f"step {step.id} ({step.type}) failed: {exc}") from exc
        except (CeremonyError, HsmError, EntropyError, NativeUnavailable) as exc:
            self.event(step.id, "step.failed", {"error": str(exc)})
            self.log.checkpoint()
            raise StepFailed(f"step {step.id} ({step.type}) failed: {exc}") from exc
        self.event(step.id, "step.completed", {"outputs": outputs, "results": results}, files=outputs)
        _kill_hook(step.id, "completed")
        self.place(step.id, outputs)
        self.results[step.id] = results
        _kill_hook(step.id, "placed")
        if kind.after is not None:
            kind.after(self, step)
        else:
            self.log.checkpoint()
        _kill_hook(step.id, "checkpointed")
        self.progress(f"[{step.id}] done" + (f": {', '.join(outputs)}" if outputs else ""))

    def _write_papers(self, only_missing: bool = False) -> None:
        """The transcript, rendered from the log after verifying it (ceremony.papers): every value on paper comes
        from the verified log, and the cover shows the final checkpoint with the witnesses' cosignatures. A
        rendering, not a record: it is replaced after each run (the log is the record), atomically."""
        from .papers.record import transcript
        from .papers.render import PaperError, render
        targets = [self.out / f"transcript{suffix}" for suffix in self.papers]
        if only_missing:
            targets = [t for t in targets if not t.exists()]
        if not targets:
            return
        data = (self.out / "audit.log").read_bytes()
        view = parse_log(data)  # parsed once: verified, then put on paper
        # a function of the log and its key only, so `qrng ceremony verify` renders the same bytes again
        doc = transcript(view, verify_log(data, [self.signer.verifier], [], 0, origin=self.origin, view=view))
        for path in targets:
            try:
                atomic_write(path, render(doc, path.suffix, __version__), overwrite=True)
            except PaperError as exc:
                self.progress(f"{path.name} not written: {exc}")
                continue
            self.progress(f"transcript: {path}")


def _rename_file_key(text: str, name: str) -> Signer:
    """A file key signs under the log's origin as its key name (the key ID depends on the name)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from transparency.note import ed25519_signer
    signer = load_ed25519_signer(text)
    raw = base64.b64decode(text.strip().split("+", 4)[4])[1:]
    return ed25519_signer(name, ed25519.Ed25519PrivateKey.from_private_bytes(raw)) if signer.name != name else signer


