"""Game day for a ceremony in progress (issue 22): the faults injected mid-run, what the operator reads, what the
signed log keeps, and how the ceremony recovers. tests/system/ceremony/test_gameday_ceremony.py injects each one
for real (a full tmpfs and a read-only bind mount in a private mount namespace, SoftHSM2's token storage full or
gone, SIGKILL at random moments) and checks every column; docs/gameday.md renders this table."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CEREMONY_FAULTS", "KILL_ROW", "CeremonyFault", "markdown"]


@dataclass(frozen=True)
class CeremonyFault:
    name: str
    fault: str          # how the test injects it (tests/system/ceremony/fault_ns.py --fault)
    folder: str         # "out" (the ceremony's folder) or "tokens" (SoftHSM2's token storage)
    injected: str       # for the document: what was done, when
    says: str           # what the operator reads: a regular expression over the command's stderr
    reads: str          # the same, for the document
    step_failed: bool   # whether the log records step.failed (an HSM error does; a full or read-only folder does
    #                     not: it is the folder's fault, not the step's)
    log: str            # for the document: what the log holds about it


_AT = "after the root certificate (step root-cert), before the issuing CA's key"

CEREMONY_FAULTS: tuple[CeremonyFault, ...] = (
    CeremonyFault(
        "output folder full", "full", "out", f"the ceremony folder's file system filled to its last page, {_AT}",
        r"cannot write \S+/root-ca-2026/\S*: No space left on device\. The run stopped; what was written "
        r"before is intact .* run the same command to resume",
        "`cannot write <file>: No space left on device. The run stopped; what was written before is intact ... run "
        "the same command to resume`", False, "no `step.failed`: nothing is wrong with the step"),
    CeremonyFault(
        "output folder read-only", "readonly", "out", f"the ceremony folder made read-only (EROFS), {_AT}",
        r"cannot write \S+/root-ca-2026/\S*: Read-only file system\. The run stopped",
        "`cannot write <file>: Read-only file system. The run stopped; ...`", False,
        "no `step.failed`: nothing is wrong with the step"),
    CeremonyFault(
        "HSM token storage full", "full", "tokens", f"SoftHSM2's token storage filled to its last page, {_AT}",
        r"step int-key \(generate_keypair\) failed: key generation for 'issuing-ca-2026' failed: FunctionFailed",
        "`step int-key (generate_keypair) failed: key generation for 'issuing-ca-2026' failed: FunctionFailed` "
        "(the token's CKR_FUNCTION_FAILED)", True, "`step.failed` for int-key, signed (signing needs no storage)"),
    CeremonyFault(
        "HSM token gone", "gone", "tokens", f"SoftHSM2's token objects removed from under it, {_AT}",
        r"signing key 'audit-log-key' not found on token 'qrng-test' \(its objects are gone",
        "`signing key 'audit-log-key' not found on token 'qrng-test' (its objects are gone: a removed or replaced "
        "token?)`", True,
        "`step.failed`, unsigned (the checkpoint key is gone): moved aside as evidence on resume"),
)

KILL_ROW = ("kill -9 at random moments",
            "SIGKILL in five runs, each a random fraction of a second (under 0.08 s) after a step it still has to do "
            "starts (seeded)",
            "nothing: the process is gone (no handler runs)",
            "unconfirmed entries after the last checkpoint are moved aside as evidence and their steps redone; a key "
            "already made is adopted by its carried CKA_ID, never made twice")


def markdown() -> str:
    rows = ["| fault | injected | the operator reads (never a traceback) | the signed log | recovery |",
            "|---|---|---|---|---|"]
    for f in CEREMONY_FAULTS:
        rows.append(f"| {f.name} | {f.injected} | exit 1: {f.reads} | every record before the fault, whole; {f.log} | "
                    "the same command, once the cause is fixed |")
    name, injected, reads, log = KILL_ROW
    rows.append(f"| {name} | {injected} | {reads} | {log} | the same command |")
    return "\n".join([
        "## A ceremony in progress",
        "",
        "Injected for real into `ceremonies/root-ca.yaml` on SoftHSM2 (tests/system/ceremony/test_gameday_ceremony.py,",
        "in `make test`): a tmpfs filled to its last page and a read-only bind mount in a private mount namespace,",
        "SoftHSM2's token storage full or gone, SIGKILL. After each, the same `qrng ceremony run` command finishes the",
        "ceremony with exactly the keys the script names (each once), every output, and `qrng ceremony verify`",
        "passes with the auditor's keys. Every file and log record is written whole or not at all, so nothing",
        "written before a fault is lost (a full disk once left a torn log record and a nameless error: fixed).",
        "",
        *rows,
        "",
        "A mechanism error: the token's mechanism list is checked before any step acts (a script whose key type or",
        "signature the token lacks is refused, exit 2, nothing touched: tests/unit/ceremony/test_runner_hardening.py).",
        "A token that fails an operation mid-step (a signature refused, the token dropping off) is a FAKE HSM in",
        "tests/unit/ceremony/test_runner.py, as a real token does not change its mechanisms within a session: the",
        "step is logged failed, the run exits 1, and the resumed run adopts the key the failed step had made.",
        "",
    ])
