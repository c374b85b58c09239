"""Game day, entropy-core layer (issue 22): each fault of the SIMULATOR injected at a known sample, the pipeline
driven as qrngd drives it (extracted output, fail closed per block), and measured from onset to detection: how
many samples, which check detected it, and how many bytes left the pipeline from samples taken after the onset.

A health test judges each block before any of it is used (SP 800-90B 4.4), so a fault it detects releases 0 bytes
of post-onset output. A fault inside the cutoffs (a slow bias drift, a mild entropy loss) is not seen by the
health tests: the periodic SP 800-90B assessment (``assessment.every_samples``) catches it later, and the bytes
released meanwhile are counted, not hidden. Faults that are not about the samples (tamper: attestation; a
throughput drop: latency alerts) are named with what detects them instead.

The SIMULATOR's noise is a seeded PRNG here (reproducible): it is not a quantum source. Consumers of the daemon
and the modules see these failures as documented: CKR_DEVICE_ERROR (CKR_DEVICE_REMOVED for a removed device),
exit 3 from `qrng bytes`, `source.failed` in the log, `qrng_source_up` 0 and QrngSourceUnhealthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .config import AssessmentConfig, EntropyConfig, ExtractorConfig, HealthConfig, SourceConfig
from .errors import DeviceHealthFailure, EntropyError, HealthTestFailure, SourceError, SourceRemoved
from .sources.model import Fault, SimulatorConfig

__all__ = ["FAULTS", "USB_FAULTS", "Outcome", "Scale", "run_fault", "run_matrix", "run_usb_fault", "table"]


@dataclass(frozen=True)
class Scale:
    onset: int            # the sample index the fault starts at
    budget: int           # samples read after the onset before giving up on detection
    assess_every: int     # the periodic assessment's interval in the second pass (samples)
    assess_window: int


SMALL = Scale(onset=200_000, budget=2_000_000, assess_every=250_000, assess_window=100_000)
FULL = Scale(onset=1_000_000, budget=20_000_000, assess_every=1_000_000, assess_window=1_000_000)

# (fault kind, parameters, what detects it when the samples themselves do not show it)
FAULTS: tuple[tuple[str, dict[str, float], str], ...] = (
    ("stuck_at", {"value": 0}, ""),
    ("repeating_pattern", {"period": 4}, ""),
    ("low_entropy", {"factor": 0.01}, ""),
    ("saturation", {"factor": 40.0}, ""),
    ("supply_failure", {}, ""),
    ("low_entropy", {"factor": 0.5}, ""),           # mild: inside the health tests' cutoffs
    ("bias_drift", {"rate": 0.0002}, ""),           # slow: inside the cutoffs for a long time
    ("tamper", {}, "attestation (qrngd attest_roots; the attest_device ceremony step): the samples are unchanged"),
    ("throughput_drop", {"rate": 2_000_000.0}, "the latency SLO (QrngSeedLatencyHigh) and the raw-rate panel: "
                                               "the samples are unchanged"),
)


@dataclass(frozen=True)
class Outcome:
    fault: str                    # "F1 low_entropy factor=0.01"
    detected_by: str              # the test or check, or "not detected within N samples"
    samples_to_detection: int | None
    bytes_after_onset: int        # extracted bytes released from calls that read samples past the onset
    detail: str = ""


def _config(kind: str, params: dict[str, float], scale: Scale, assess: bool) -> EntropyConfig:
    sim = SimulatorConfig(seed=21, faults=(Fault(kind, scale.onset, params),))
    cfg = EntropyConfig(source=SourceConfig(type="simulator", simulator=sim), extractor=ExtractorConfig(type="sha256"),
                        health=HealthConfig(block_samples=8192))
    if assess:
        cfg = replace(cfg, assessment=AssessmentConfig(every_samples=scale.assess_every,
                                                       window_samples=scale.assess_window))
    return cfg


def _detector(exc: EntropyError) -> str:
    if isinstance(exc, HealthTestFailure):
        return f"{exc.test} health test"
    if isinstance(exc, DeviceHealthFailure):
        return "the device's own health tests (GET_STATUS)"
    if isinstance(exc, SourceRemoved):
        return "device removed"
    if isinstance(exc, SourceError):
        return "source error (no samples)"
    if "assessment" in str(exc):
        return "SP 800-90B assessment (periodic)"
    return type(exc).__name__


def run_fault(kind: str, params: dict[str, float], scale: Scale, assess: bool = False, chunk: int = 4096,
              open_pipeline: Callable[[EntropyConfig], object] | None = None) -> Outcome:
    """Inject one fault and drive the pipeline until it fails closed or ``scale.budget`` samples past the onset."""
    from .pipeline import Pipeline
    from .sources.model import FAULT_KINDS
    label = f"{FAULT_KINDS[kind]} {kind}" + "".join(f" {k}={v:g}" for k, v in params.items())
    if assess:
        label += " (with periodic assessment)"
    p = Pipeline(_config(kind, params, scale, assess))
    released = 0
    try:
        while True:
            before = p.report().accounting.raw_samples
            if before >= scale.onset + scale.budget:
                h, claim = getattr(p, "last_assessment", None), p.info.claimed_min_entropy
                why = (f"assessed {h:.3f} bits/sample, at or above the claimed {claim}: the output still carries "
                       "the entropy credited to it") if h is not None else "no assessment ran"
                return Outcome(label, f"not detected within {scale.budget:,} samples", None, released, why)
            try:
                out = p.extracted(chunk)
            except EntropyError as exc:
                at = getattr(exc, "sample_index", None)
                if isinstance(exc, SourceError):
                    reached = scale.onset  # the read that would have crossed the onset delivered nothing
                elif isinstance(at, int) and at >= scale.onset:
                    reached = at
                else:
                    reached = p.report().accounting.raw_samples + p.config.health.block_samples
                return Outcome(label, _detector(exc), max(0, reached - scale.onset), released, str(exc)[:120])
            if p.report().accounting.raw_samples > scale.onset:
                released += len(out)
    finally:
        p.close()


# the USB EMULATOR's faults (docs/usb-protocol.md: the control file): bus faults on the bulk endpoint, removal,
# and a stuck physics behind a working bus
USB_FAULTS: tuple[tuple[str, str], ...] = (
    ("fault", "stall"), ("fault", "timeout"), ("fault", "silent"), ("fault", "zlp"), ("fault", "eio"),
    ("fault", "short"), ("plugged", "no"), ("physics_fault", "stuck_at"),
)
USB_ONSET, USB_BUDGET = 100_000, 1_000_000  # samples before the fault; samples read after it before giving up
USB_NOISE_SEED = 22  # the emulator's noise repeats run after run, so the document does too


def run_usb_fault(key: str, value: str, chunk: int = 4096) -> Outcome:
    """One fault of the USB EMULATOR (a software device, not quantum), injected through its control file once
    ``USB_ONSET`` samples were read; the pipeline driven as qrngd drives it until it fails closed. A bus fault
    delivers no samples, so nothing from after its onset can leave; ``detail`` says how long detection took (a
    timeout waits for the read timeout, 0.2 s here)."""
    import tempfile
    import time
    from pathlib import Path

    from .config import config_from_text
    from .pipeline import Pipeline
    from .sources.usbemu import write_control
    from .sources.usbemu_init import init_emulator
    label = f"USB EMULATOR {key}={value}"
    with tempfile.TemporaryDirectory(prefix="qrng-gameday-usb-") as d:
        # seeded noise: the sample before the onset is the same every run (a stuck value that happens to follow
        # an equal sample is caught one sample sooner, and docs/gameday.md would change with it)
        folder = init_emulator(Path(d) / "EMU-GAMEDAY", Path(d) / "att", serial="EMU-GAMEDAY",
                               noise_seed=USB_NOISE_SEED)["folder"]
        p = Pipeline(config_from_text(f"source: {{type: usb, emulator: '{folder}', read_timeout: 0.2}}\n"
                                      "extractor: {type: sha256}\nhealth: {block_samples: 8192}\n"))
        released, onset, t0 = 0, None, 0.0
        try:
            while True:
                raw = p.report().accounting.raw_samples
                if onset is None and raw >= USB_ONSET:
                    write_control(folder, **{key: value})
                    time.sleep(0.05)  # the device reads its control file at most every 20 ms: the fault is on now
                    onset, t0 = raw, time.monotonic()
                if onset is not None and raw >= onset + USB_BUDGET:
                    return Outcome(label, f"not a failure: the samples arrive whole (read on; {USB_BUDGET:,} "
                                   "samples read)", None, released, "short packets are read on")
                try:
                    out = p.extracted(chunk)
                except EntropyError as exc:
                    acc = p.report().accounting
                    at = getattr(exc, "sample_index", None)  # a health test names the sample it fired at
                    after = (at if isinstance(at, int) else acc.raw_samples) - (onset or 0)
                    return Outcome(label, _detector(exc), max(0, after), released,
                                   f"{time.monotonic() - t0:.2f} s after the onset: {str(exc)[:100]}")
                if onset is not None and p.report().accounting.raw_samples > onset:
                    released += len(out)  # from a call that read samples the device gave after the onset
        finally:
            p.close()


def run_matrix(scale: Scale, progress: Callable[[str], None] = lambda m: None) -> list[Outcome]:
    """Every fault once; the faults the health tests miss once more with the periodic assessment on."""
    out: list[Outcome] = []
    for i, (kind, params, other) in enumerate(FAULTS, 1):
        progress(f"[{i}/{len(FAULTS)}] {kind} {params}")
        if other:
            out.append(Outcome(f"{kind}", other, None, 0, "not a change of the samples"))
            continue
        o = run_fault(kind, params, scale)
        out.append(o)
        if o.samples_to_detection is None:
            progress(f"[{i}/{len(FAULTS)}] {kind} {params} again, with the periodic SP 800-90B assessment")
            out.append(run_fault(kind, params, scale, assess=True))
    for i, (key, value) in enumerate(USB_FAULTS, 1):
        progress(f"[USB {i}/{len(USB_FAULTS)}] {key}={value}")
        out.append(run_usb_fault(key, value))
    return out


# Faults around the entropy core, each injected for real by the system test named (path::function), which checks
# what the row says: (fault, how it is injected, what happens and who says it, the test)
AROUND: tuple[tuple[str, str, str, str], ...] = (
    ("recovery after a detected fault", "the USB EMULATOR plugged back, or no longer stuck, under a running qrngd",
     "qrngd opens the source again by itself (at most once a second) with its start-up tests and serves only when "
     "they pass: the first seed within 3 s of the cause's removal (checked; the time is printed); the pool was "
     "dropped at the failure and every byte served after is younger than the recovery. With "
     "`health.allow_reset: false`, only a restart brings it back",
     "tests/system/daemon/test_gameday_recovery.py::test_recovery_is_bounded_and_serves_nothing_from_before"),
    ("qrngd's audit log: disk full", "the log's tmpfs filled in qrngd's own mount namespace while it runs",
     "serving goes on; the events of the outage are held in memory with their times, `qrng_audit_log_writable` 0 "
     "(QrngAuditLogNotRecording), and appended in order once space returns; the log verifies",
     "tests/system/daemon/test_gameday_audit_log.py::test_a_full_disk_holds_the_daemons_events_and_writes_them_when"
     "_space_returns"),
    ("a witness down", "one of three witness processes killed (SIGKILL) mid-ceremony",
     "the other two make the quorum; restarted with its state, it answers 409 and the client resends from its size",
     "tests/system/qrng/test_witnesses.py::test_quorum_kill_restart_and_fork"),
    ("a witness answering garbage or nothing", "a FAKE witness answering bytes that are no cosignature, a foreign "
     "key's cosignature, nothing (hangs), HTTP 500",
     "named per witness (`refused: its answer does not verify with its key`, `unreachable`, `HTTP 500: ...`); never "
     "counted, nothing it said enters the log; a policy that needs it: quorum not met, exit 1",
     "tests/system/qrng/test_witnesses.py::test_a_witness_answering_garbage_or_nothing_never_counts_and_never_breaks"
     "_the_log"),
    ("a forked log", "the log key signs a second, different history", "no witness cosigns it (HTTP 409/422); "
     "`qrng audit verify --policy` fails: the quorum is not met",
     "tests/system/qrng/test_witnesses.py::test_quorum_kill_restart_and_fork"),
    ("a tile server serving tampered, missing, stale or forked tiles", "the static server's files changed, removed, "
     "rolled back to an older checkpoint, or replaced by another history",
     "exit 1, never a pass: a tampered tile is named (`tile/0/001 differs`), a missing one is `HTTP 404`, a "
     "checkpoint older than the one kept in `--state` is `rolled back`, another history under the same key is a "
     "`fork`",
     "tests/system/qrng/test_tiles_http.py::test_tampered_missing_stale_and_forked_tiles_are_caught"),
    ("the beacon's clock ahead", "the beacon under libfaketime, 5 minutes ahead; the witnesses on the true clock",
     "every pulse: `the beacon's clock is ahead of every witness's (cosignature time minus pulse time stamp: w1 "
     "-300 s, ...)` from the witnesses' own cosignature times",
     "tests/system/qrng/test_beacon_run.py::test_a_skewed_beacon_clock_is_named_by_its_witnesses_and_a_clock_stepped"
     "_back_emits_nothing"),
    ("the beacon's clock stepped back", "the beacon restarted 5 minutes behind its last pulse",
     "no pulse is dated before its predecessor; said once (`the clock says ..., not after the last pulse's time "
     "stamp`), not a silent stall",
     "tests/system/qrng/test_beacon_run.py::test_a_skewed_beacon_clock_is_named_by_its_witnesses_and_a_clock_stepped"
     "_back_emits_nothing"),
    ("a health failure under the beacon", "the USB EMULATOR stuck while the beacon runs",
     "no pulse from a failed health state; the next pulse has status bit 2 (a gap); the pulses verify",
     "tests/system/qrng/test_beacon_run.py::test_beacon_runs_is_witnessed_and_verifies_from_tiles"),
)


# each runbook's fault (docs/runbooks/), injected into a running qrngd by tests/system/daemon/test_gameday_runbooks.py
# with a real Prometheus evaluating the rules, which then finds every signal the runbook's Signals section names
RUNBOOK_FAULTS: dict[str, str] = {
    "QrngAttestationInvalid": "the USB EMULATOR's firmware image changed after its certificate was issued",
    "QrngAuditLogNotRecording": "the audit log's file system full (tests/system/daemon/test_gameday_audit_log.py)",
    "QrngClientFellBack": "qrngd down while a daemon-mode PKCS#11 consumer with `fallback = os` draws, then back",
    "QrngDaemonDown": "qrngd killed (SIGKILL)",
    "QrngEntropyBelowClaim": "a source claiming 7.5 bits/sample that the SP 800-90B assessment puts below 7.0",
    "QrngEntropyEstimateMissing": "`assessment.every_samples: 0`",
    "QrngHealthTestFailure": "the USB EMULATOR stuck at one value",
    "QrngRequestsRefused": "the USB EMULATOR stuck at one value, clients asking on",
    "QrngSeedLatencyHigh": "a SIMULATOR throughput drop (F3) to 20,000 samples/s, the pool drained by clients",
    "QrngSourceUnhealthy": "the USB EMULATOR unplugged",
    "QrngAttestationExpiringSoon": "time-driven (a certificate 30 days from expiry): promtool drives the clock; the "
                                   "input series is checked exported",
    "QrngAttestationStale": "time-driven (2 hours without attestation): promtool drives the clock; the input series "
                            "is checked exported",
    "QrngSeedPoolStale": "time-driven (an hour-old pool): promtool drives the clock; the input series is checked "
                         "exported",
}


def runbook_table() -> str:
    rows = ["| runbook | fault injected |", "|---|---|"]
    rows += [f"| [{b}](runbooks/{b}.md) | {f} |" for b, f in sorted(RUNBOOK_FAULTS.items())]
    return "\n".join(rows)


def around_table() -> str:
    rows = ["| fault | injected | what happens, and who says it | checked by |", "|---|---|---|---|"]
    rows += [f"| {f} | {how} | {what} | `{test.split('::')[0]}` |" for f, how, what, test in AROUND]
    return "\n".join(rows)


def table(outcomes: list[Outcome], scale: Scale) -> str:
    rows = [f"| fault (SIMULATOR: onset at sample {scale.onset:,}; USB EMULATOR: after {USB_ONSET:,} samples) "
            "| detected by | samples from onset to detection | bytes released from samples after the onset |",
            "|---|---|---|---|"]
    for o in outcomes:
        n = f"{o.samples_to_detection:,}" if o.samples_to_detection is not None else "-"
        rows.append(f"| {o.fault} | {o.detected_by} | {n} | {o.bytes_after_onset:,} |")
    return "\n".join(rows)
