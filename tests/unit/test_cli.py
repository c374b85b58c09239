"""The qrng command in-process: one exit-code table, errors that name the file, a help line for every option."""

from __future__ import annotations

import argparse

import pytest

import qrng_cli
from qrng_cli.common import EXIT_TABLE, ExitCode


def _actions(p: argparse.ArgumentParser, path: list[str]):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _actions(sp, [*path, name])
        elif not isinstance(a, argparse._HelpAction):
            yield " ".join(path), a


def test_every_option_has_a_help_line():
    missing = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in _actions(qrng_cli.build_parser(), ["qrng"])
               if not a.help]
    assert missing == []


@pytest.mark.parametrize("text, where", [
    ("version: 1\nhealth:\n  alpha_log2: 5\n", ":3:3: health.alpha_log2 must be between"),
    ("version: 1\nhealth: {alpha_log2: .nan}\n", "health.alpha_log2"),
    ("version: 1\nsource: [\n", "malformed YAML"),
    ("version: 1\nsurprise: 1\n", "surprise is not a known key"),
])
def test_malformed_entropy_yaml_exits_2_naming_the_file(tmp_path, capsys, text, where):
    cfg = tmp_path / "entropy.yaml"
    cfg.write_text(text)
    assert qrng_cli.main(["bytes", "4", "--hex", "--config", str(cfg)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert str(cfg) in err and where in err and "Traceback" not in err


def test_non_utf8_config_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes(b"version: 1\n# caf\xe9\n")
    assert qrng_cli.main(["sources", "--config", str(cfg)]) == ExitCode.USAGE
    assert f"{cfg}: is not UTF-8" in capsys.readouterr().err


def test_exit_table_orders_specific_before_root():
    names = [r.cls for r in EXIT_TABLE]
    assert names.index("ceremony.errors:ScriptError") < names.index("qrng.errors:ConfigError")
    assert names.index("qrng.errors:NativeUnavailable") < names.index("qrng.errors:EntropyError")
    assert names.index("transparency.errors:TamperedError") < names.index("transparency.errors:AuditError")
    assert names.index("transparency.verdict:NotIndependentlyVerified") < names.index("transparency.errors:AuditError")
    assert names.index("qrngd.client:DaemonNotRunning") < names.index("qrng.errors:EntropyError")
    # every code but OK (no exception) and INTERNAL (no rule: a bug) comes from a rule
    assert {r.code for r in EXIT_TABLE} == {ExitCode.VERIFY_FAILED, ExitCode.USAGE, ExitCode.ENTROPY,
                                            ExitCode.UNVERIFIED, ExitCode.NOT_RUNNING}


@pytest.mark.parametrize("argv", [
    ["audit", "verify", "x.log", "--key", "k", "--quorum", "-1"],
    ["audit", "check-proof", "p", "e", "--key", "k", "--quorum", "-3"],
    ["audit", "prove", "x.log", "--index", "-1"],
    ["estimate", "f.bin", "-b", "8", "--permutations", "0"],
    ["estimate", "f.bin", "-b", "8", "--permutations", "-5"],
])
def test_out_of_range_arguments_are_usage_errors(argv, capsys):
    """Issue 10 item 18: negative quorums, indexes and permutation counts are refused with exit 2."""
    with pytest.raises(SystemExit) as exc:
        qrng_cli.main(argv)
    assert exc.value.code == 2 and "must be at least" in capsys.readouterr().err



def test_fifo_source_is_refused_or_times_out_never_hangs(tmp_path, capsys):
    """Issue 10 item 9 through the CLI: a FIFO is refused as a file; as a stream, silence is an entropy failure."""
    import os
    import time
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "fifo.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: file, path: {fifo}, claimed_min_entropy: 4}}\n"
                   "extractor: {type: sha256}\n")
    assert qrng_cli.main(["bytes", "16", "--hex", "--config", str(cfg)]) == ExitCode.USAGE
    assert "is a FIFO; a file source replays regular files only" in capsys.readouterr().err
    cfg.write_text(f"version: 1\nsource: {{type: file, path: {fifo}, claimed_min_entropy: 4, stream: true, "
                   "read_timeout: 0.3}\nextractor: {type: sha256}\n")
    t = time.monotonic()
    assert qrng_cli.main(["bytes", "16", "--hex", "--config", str(cfg)]) == ExitCode.ENTROPY
    assert "no data for 0.3 s" in capsys.readouterr().err and time.monotonic() - t < 5


@pytest.mark.parametrize("text, phrase", [
    ("version: 1\n? [a]\n: 1\n", ":2:3: a mapping key must be a plain scalar"),
    ("version: 1\nbase: &b {type: simulator}\nsource:\n  <<: *b\n", ":4:3: merge keys ('<<') are not supported"),
    ("version: 1\nsource: {type: simulator, faults: [{kind: throughput_drop, rate: 0}]}\n",
     "source.faults[0] rate must be a number from"),
    ("version: 1\nsource: {type: simulator, faults: [{kind: repeating_pattern, period: 0}]}\n",
     "source.faults[0] period must be an integer from 1"),
    ("version: 1\nsource: {type: simulator, faults: [{kind: stuck_at, value: 300}]}\n",
     "source.faults[0] value must be an integer from 0 to 255"),
])
def test_hostile_yaml_is_an_error_not_a_traceback(tmp_path, capsys, text, phrase):
    """Issue 10 item 15: complex keys, merge keys and zero fault parameters were tracebacks (exit 1)."""
    cfg = tmp_path / "hostile.yaml"
    cfg.write_text(text)
    assert qrng_cli.main(["bytes", "4", "--hex", "--config", str(cfg)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{cfg}" in err and phrase in err


def test_a_trillion_bytes_is_refused_not_a_memory_error(capsys):
    """Issue 10 item 15: `qrng bytes 1000000000000` died with MemoryError (exit 1)."""
    assert qrng_cli.main(["bytes", "1000000000000", "--hex"]) == ExitCode.USAGE
    assert "use --out FILE" in capsys.readouterr().err


def test_large_out_is_streamed_and_all_or_nothing(tmp_path):
    cfg = tmp_path / "sha.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    out = tmp_path / "r.bin"
    assert qrng_cli.main(["bytes", str(3 << 20), "--out", str(out), "--config", str(cfg)]) == ExitCode.OK
    assert out.stat().st_size == 3 << 20
    bad = tmp_path / "stuck.yaml"
    # a reseed per 64 KiB request from 1,024-sample blocks: the fault at sample 13,000 strikes mid-request
    bad.write_text("version: 1\nsource: {type: simulator, faults: ['stuck_at@13000']}\nextractor: {type: sha256}\n"
                   "health: {block_samples: 1024}\ndrbg: {reseed_interval: 1}\n")
    failed = tmp_path / "f.bin"
    assert qrng_cli.main(["bytes", str(8 << 20), "--out", str(failed), "--config", str(bad)]) == ExitCode.ENTROPY
    assert not failed.exists() and not list(tmp_path.glob(".f.bin*"))  # nothing appears, no temporary is left


def test_estimate_refuses_a_file_that_would_not_fit(tmp_path, capsys, monkeypatch):
    """Issue 10 item 8: a clear refusal naming the memory needed, before reading the file. Available memory is
    FAKED low (a real shortage cannot be made safely in a test)."""
    import qrng_cli.estimate as est
    monkeypatch.setattr(est, "_available_memory", lambda: 256 << 20)
    f = tmp_path / "big.bin"
    with open(f, "wb") as fh:
        fh.truncate(50_000_000)  # 50 MB of 8-bit samples, sparse on disk
    assert qrng_cli.main(["estimate", str(f), "-b", "8"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "need about" in err and "GiB for the assessment" in err and "0.2 GiB is available" in err


def test_progress_keeps_coming_during_a_long_call(capsys, monkeypatch):
    """Issue 10 item 8: a progress line at least every EVERY seconds, also while a C call holds the thread."""
    import time

    import qrng_cli.estimate as est
    monkeypatch.setattr(est._Ticker, "EVERY", 0.2)
    ticker = est._Ticker(quiet=False, expected=10.0)
    ticker.progress("phase one")
    time.sleep(1.1)  # like a C estimator that released the GIL
    ticker.stop()
    lines = [x for x in capsys.readouterr().err.splitlines() if "phase one" in x]
    assert len(lines) >= 4


@pytest.mark.parametrize("path, phrase", [("/dev/zero", "not a regular file"), ("/tmp", "not a regular file"),
                                          ("/nonexistent-qrng.bin", "No such file")])
def test_estimate_names_a_path_that_is_not_a_sample_file(capsys, path, phrase):
    assert qrng_cli.main(["estimate", path, "-b", "8"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert path in err and phrase in err and "Traceback" not in err


@pytest.mark.parametrize(("cls", "exit_code", "rv_name"), [
    ("NativeUnavailable", ExitCode.USAGE, "CKR_GENERAL_ERROR"),   # installation: the user's to fix
    ("ConfigError", ExitCode.USAGE, "CKR_GENERAL_ERROR"),
    ("ExtractionFailed", ExitCode.ENTROPY, "CKR_DEVICE_ERROR"),   # a kernel failing at run time: no bytes
    ("HealthTestFailure", ExitCode.ENTROPY, "CKR_DEVICE_ERROR"),
])
def test_error_roots_by_boundary_map_through_the_one_table_each(cls, exit_code, rv_name):
    """Issue 21: configuration and installation (SetupError, exit 2) and entropy (EntropyError, exit 3) are separate
    roots; an unbuilt kernel is never an entropy failure (it used to derive from EntropyError)."""
    import qrng.errors as errors
    from qrng_cli.common import exit_code_for
    from qrng_pkcs11 import ckdefs as ck
    from qrng_pkcs11._boundary import rv_for
    args = {"ConfigError": ("key.size", "must be a number"), "HealthTestFailure": ("RCT", 7, 31, 31, 0)}
    exc = getattr(errors, cls)(*args.get(cls, ("test",)))
    assert isinstance(exc, errors.SetupError) != isinstance(exc, errors.EntropyError)
    rule = exit_code_for(exc)
    assert rule is not None and rule.code == exit_code
    assert rv_for(exc) == getattr(ck, rv_name)


def test_a_programming_error_is_a_bug_report_not_a_usage_error(monkeypatch, capsys):
    """Issue 21: a ValueError no rule names used to exit 2 as a usage error, hiding bugs as the user's fault. It is
    a traceback, a line asking for a report, and exit 70; a UsageError is still exit 2 without a traceback."""
    import qrng_cli.entropy as entropy

    def broken(args):
        raise ValueError("an internal invariant")
    monkeypatch.setattr(entropy, "_pipeline", broken)
    assert qrng_cli.main(["bytes", "4", "--hex"]) == ExitCode.INTERNAL == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error (ValueError): this is a bug in qrng-ceremony" in err
    assert "an internal invariant" in err


def test_usage_errors_and_malformed_input_exit_2_without_a_traceback(tmp_path, capsys):
    from qrng.errors import UsageError
    assert any(r.cls == "qrng.errors:SetupError" for r in EXIT_TABLE) and issubclass(UsageError, ValueError)
    assert qrng_cli.main(["bytes", str(1 << 40), "--hex"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "use --out FILE" in err and "Traceback" not in err
    import json

    from qrng_cli.common import exit_code_for
    rule = exit_code_for(json.JSONDecodeError("Expecting value", "{", 1))
    assert rule is not None and rule.code == ExitCode.USAGE  # a malformed input file, named as such
    assert exit_code_for(ValueError("anything else")) is None  # a bug: no rule, exit 70


def test_status_says_qrngd_is_not_running_and_how_to_look(tmp_path, capsys):
    """Issue 22 (on-call): with the daemon down, `qrng status` said "entropy failure" (exit 3, as for a running
    daemon without a healthy source). It says qrngd is not running, where it looked, how to look under systemd, and
    exits 5: no socket, and a stale socket nobody listens on (a crashed daemon)."""
    import socket
    assert qrng_cli.main(["status", "--socket", str(tmp_path / "none.sock")]) == ExitCode.NOT_RUNNING == 5
    err = capsys.readouterr().err
    assert f"qrngd is not running (no socket at {tmp_path / 'none.sock'})" in err and "journalctl -u qrngd" in err
    assert "entropy failure" not in err
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    assert qrng_cli.main(["status", "--socket", str(stale), "--json"]) == 5
    out, err = capsys.readouterr()
    assert '"status": "not_running"' in out and "nothing listens on the socket" in err
