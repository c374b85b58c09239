"""The ``qrng`` command: one parser, an explicit list of subcommands, one table from exceptions to exit codes.

Each subcommand module registers its parsers and holds thin command functions: parse arguments, call a library
function, render text or JSON. Libraries are imported inside the command functions, so ``qrng --help`` and
``qrng audit verify`` start without numpy or the native kernels.

Exit codes (``ExitCode``): 0 success; 1 verification failed (tampered or inconsistent: the first bad entry is
named), a ceremony step failed or its folder stopped taking writes; 2 usage, configuration or I/O error (for
ceremonies: nothing was touched);
3 entropy failure (health test or source error: nothing was output); 4 consistent but not independently verified
(a required check was not made); 130, 141, 143 interrupted by Ctrl-C, a closed output, SIGTERM (never success).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from .common import SIGINT_EXIT, SIGPIPE_EXIT, ExitCode, Interrupted, exit_code_for, report, say, silence_stdout

__all__ = ["COMMANDS", "ExitCode", "build_parser", "main"]

# The subcommands, in the order --help lists them: (module in this package, what it adds)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("entropy", "bytes, health, sources, attestation"),
    ("estimate", "estimate"),
    ("ceremony", "ceremony plan | run | verify"),
    ("audit", "audit verify | prove | publish | check-proof | show | keygen | cosign"),
    ("witness", "witness serve | collect"),
    ("beacon", "beacon run | verify"),
    ("usb", "usb emulator init | set, usb info"),
    ("daemon", "daemon, status"),
    ("gameday", "gameday exposure | run"),
    ("module", "module-path, openssl-config"),
)


DESCRIPTION = """Quantum random numbers where keys are born: random bytes from a health-tested, extracted source,
SP 800-90B assessment, key ceremonies on an HSM, and signed audit logs verified offline.

exit codes: 0 success; 1 verification failed (tampered or inconsistent), a ceremony step failed, or a
ceremony's folder stopped taking writes (full or read-only: the same command resumes);
2 usage, configuration or I/O error (ceremonies: nothing was touched); 3 entropy failure (nothing was output);
4 consistent but not independently verified (a check the verdict needs was not made: "not checked");
5 qrngd is not running (no socket, or nobody listens on it);
70 internal error (a bug: a traceback and a line asking for a report);
130 Ctrl-C, 141 the output was closed (| head, a pager), 143 SIGTERM: interrupted, never a success."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qrng", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, _ in COMMANDS:
        importlib.import_module(f"{__name__}.{module}").register(sub)
    return ap


def _prog(args: argparse.Namespace) -> str:
    return f"qrng {args.command}" if getattr(args, "command", None) else "qrng"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # the reader went away (``qrng health | head -1``): what it did not read was not delivered, so this is
        # never a success; exit as a process killed by SIGPIPE would, and keep Python quiet at exit
        silence_stdout()
        say(f"{_prog(args)}: interrupted: the output was closed before everything was written")
        return SIGPIPE_EXIT
    except Interrupted as exc:
        if exc.code == SIGPIPE_EXIT:
            silence_stdout()
        say(f"{_prog(args)}: interrupted ({exc.reason})" + (f"; {exc.hint}" if exc.hint else ""))
        return exc.code
    except KeyboardInterrupt:
        say(f"{_prog(args)}: interrupted")
        return SIGINT_EXIT
    except Exception as exc:  # noqa: BLE001 - mapped by the one table; what it does not know is a bug
        if exit_code_for(exc) is None:
            return _bug(_prog(args), exc)
        return int(report(_prog(args), exc, bool(getattr(args, "json", False))))


def _bug(prog: str, exc: Exception) -> int:
    """An exception no rule of the exit table names is a programming error: its traceback, and a line saying so."""
    import traceback

    from qrng import __version__
    traceback.print_exception(exc)
    say(f"{prog}: internal error ({type(exc).__name__}): this is a bug in qrng-ceremony {__version__}, not a "
        "problem with what you gave it; please report it with the traceback above (CONTRIBUTING.md)")
    return int(ExitCode.INTERNAL)
