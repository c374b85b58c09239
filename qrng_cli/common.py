"""What every ``qrng`` command shares: the exit codes, the one table from exception roots to exit codes, output.

The table names exception classes by module and name, so that ``qrng --help`` imports none of the libraries;
a class is imported only when an exception has to be matched against it.
"""

from __future__ import annotations

import enum
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qrng.atomic import TMP_MARK, atomic_write, sweep_stale_temporaries

__all__ = ["EXIT_TABLE", "TMP_MARK", "ExitCode", "Interrupted", "Rule", "atomic_write", "device_serial",
           "exit_code_for", "raise_on_sigterm", "say", "silence_stdout", "sweep_stale_temporaries", "write_stdout"]


class ExitCode(enum.IntEnum):
    """The exit codes of every ``qrng`` command (README, "Exit codes")."""

    OK = 0
    VERIFY_FAILED = 1    # verification failed (tampered, inconsistent), a ceremony step failed or its folder stopped
    #                      taking writes, data not IID
    USAGE = 2            # usage, configuration or I/O error; for ceremonies: nothing was touched
    ENTROPY = 3          # entropy failure (health test, source error): nothing was output
    UNVERIFIED = 4       # consistent, but not independently verified: nothing failed, yet a check the verdict needs
    #                      was not made with keys the auditor supplied (each such check says "not checked" and why)
    NOT_RUNNING = 5      # qrngd is not running (no socket, or nobody listens on it): not an entropy failure
    INTERNAL = 70        # a bug (EX_SOFTWARE): a traceback and a line asking for a report; never a verdict


@dataclass(frozen=True)
class Rule:
    """Exceptions of class ``cls`` ("module:Name") exit with ``code``; ``label`` prefixes the message."""

    cls: str
    code: ExitCode
    label: str = ""
    note: str = ""
    status: str = ""  # the "status" of the --json document; default from the code

    def matches(self, exc: BaseException) -> bool:
        module, _, name = self.cls.partition(":")
        if module not in sys.modules:  # never imported: nothing raised can be one of its classes
            return False
        return isinstance(exc, getattr(importlib.import_module(module), name))


# First match wins: the more specific classes come before their roots.
EXIT_TABLE: tuple[Rule, ...] = (
    Rule("transparency.verdict:NotIndependentlyVerified", ExitCode.UNVERIFIED, "NOT INDEPENDENTLY VERIFIED: ",
         status="unverified"),
    Rule("transparency.beacon:BeaconError", ExitCode.VERIFY_FAILED, "BEACON VERIFICATION FAILED: "),
    Rule("transparency.errors:TamperedError", ExitCode.VERIFY_FAILED, "TAMPERED OR INCONSISTENT: ", status="tampered"),
    Rule("transparency.errors:FormatError", ExitCode.USAGE),
    Rule("transparency.errors:AuditError", ExitCode.VERIFY_FAILED, "VERIFICATION FAILED: "),
    Rule("ceremony.errors:ScriptError", ExitCode.USAGE, "", "(nothing was touched)"),
    Rule("qrng.errors:ConfigError", ExitCode.USAGE, "configuration error: "),
    Rule("ceremony.errors:PolicyViolation", ExitCode.USAGE, "", "(nothing was touched)"),
    Rule("ceremony.errors:Refused", ExitCode.USAGE, "", "(nothing was touched)"),
    Rule("qrng.errors:ResourceBusy", ExitCode.USAGE),
    Rule("qrng.errors:NativeUnavailable", ExitCode.USAGE, "installation problem: "),
    Rule("qrng.errors:SetupError", ExitCode.USAGE),
    Rule("qrngd.client:DaemonNotRunning", ExitCode.NOT_RUNNING, "", status="not_running"),
    Rule("qrng.errors:EntropyError", ExitCode.ENTROPY, "entropy failure, no output produced: "),
    # the two wire protocols: a peer that does not speak them gave no entropy, and nothing was output
    Rule("qrngd.protocol:ProtocolError", ExitCode.ENTROPY, "qrngd protocol error, no output produced: "),
    Rule("qrng.sources.usbproto:ProtocolError", ExitCode.ENTROPY, "USB protocol error, no output produced: "),
    Rule("ceremony.errors:CeremonyError", ExitCode.VERIFY_FAILED),
    Rule("qrng.hsm.errors:HsmError", ExitCode.VERIFY_FAILED),
    Rule("qrng.dsse:EnvelopeError", ExitCode.VERIFY_FAILED, "VERIFICATION FAILED: "),
    Rule("builtins:MemoryError", ExitCode.USAGE, "not enough memory: "),
    Rule("builtins:OSError", ExitCode.USAGE),
    # input that is not what it claims to be (a JSON or text file given on the command line); any other
    # ValueError is a bug, not a usage error: a traceback with a bug-report line, exit 70
    Rule("json.decoder:JSONDecodeError", ExitCode.USAGE, "malformed JSON: "),
    Rule("builtins:UnicodeDecodeError", ExitCode.USAGE, "not UTF-8 text: "),
)


class Interrupted(KeyboardInterrupt):
    """The command was interrupted: Ctrl-C (130), SIGTERM (143), or its standard output or error closed (141: a
    pager quit, ``| head``, a dead ``tee``). Never a success, never a failure of the work itself: a ceremony logs no
    failed step for it and resumes from where it stopped. A KeyboardInterrupt, so that no ``except Exception`` on
    the way up mistakes it for an error of a step."""

    def __init__(self, reason: str, code: int, hint: str = "") -> None:
        super().__init__(reason)
        self.reason, self.code, self.hint = reason, code, hint


SIGINT_EXIT, SIGPIPE_EXIT, SIGTERM_EXIT = 130, 141, 143  # 128 + the signal's number, as shells report them


def raise_on_sigterm() -> Any:
    """From now on SIGTERM raises Interrupted (so ``finally`` blocks close logs and sessions); returns the handler
    it replaced."""
    import signal

    def on_term(signum: int, frame: Any) -> None:
        raise Interrupted("SIGTERM", SIGTERM_EXIT)
    return signal.signal(signal.SIGTERM, on_term)


def write_stdout(data: bytes) -> None:
    """Write all of ``data`` to standard output, or raise BrokenPipeError. Python's buffered writer returns a short
    count when the reader goes away in the middle of a large write (a pipe takes 64 KiB at a time), and a text
    stream drops the rest without an error: ``qrng bytes 4000000 --hex | head -c 16`` then exited 0 having
    delivered 64 KiB. Each os.write here either writes or raises."""
    import os
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def say(text: str, stream: Any = None) -> bool:
    """Write a line to ``stream`` (stderr by default) if it is still open; False when it is not."""
    try:
        print(text, file=stream or sys.stderr, flush=True)
    except (OSError, ValueError):  # a closed pipe (EPIPE) or a closed file
        return False
    return True


def silence_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so the interpreter's final flush is quiet."""
    import contextlib
    import os
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def exit_code_for(exc: BaseException) -> Rule | None:
    return next((r for r in EXIT_TABLE if r.matches(exc)), None)


def report(prog: str, exc: BaseException, as_json: bool) -> ExitCode:
    """Print ``exc`` on stderr (and a JSON status on stdout with --json); the exit code, or re-raise."""
    rule = exit_code_for(exc)
    if rule is None:
        raise exc
    text = str(exc) or type(exc).__name__
    index = getattr(exc, "index", None)
    if index is not None and rule.code is ExitCode.VERIFY_FAILED:
        text += f" (first bad entry: {index})"
    if as_json:
        status = {ExitCode.VERIFY_FAILED: "failed", ExitCode.USAGE: "error", ExitCode.ENTROPY: "entropy_failure",
                  ExitCode.UNVERIFIED: "unverified"}
        doc: dict[str, Any] = {"status": rule.status or status.get(rule.code, "error"), "exit_code": int(rule.code),
                               "error": str(exc), "first_bad_entry": index}
        checks = getattr(exc, "checks", None)  # a verifier's checks up to the failure (transparency.verdict.Check)
        if checks:
            doc["checks"] = [c.to_dict() for c in checks]
        print(json.dumps(doc))
    print(f"{prog}: {rule.label}{text}" + (f"\n{rule.note}" if rule.note else ""), file=sys.stderr)
    return rule.code


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= lo, with a message naming the bound."""
    def parse(text: str) -> int:
        import argparse
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo} (got {v})")
        return v
    return parse


Command = Callable[[Any], int]


SERIAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def device_serial(text: str) -> str:
    """An argparse type: a simulated or emulated device's serial, 1 to 32 of A-Z a-z 0-9 - _ . (not starting
    with a dot). It names files (``device-SERIAL.pem``) and goes into the device certificate and GET_INFO."""
    import argparse
    if not 1 <= len(text) <= 32 or not set(text) <= SERIAL_CHARS or text.startswith("."):
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: a serial is 1 to 32 of A-Z a-z 0-9 - _ . "
                                         "(not starting with a dot)")
    return text
