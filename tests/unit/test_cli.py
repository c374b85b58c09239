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
    assert names.index("qrng.audit.errors:TamperedError") < names.index("qrng.audit.errors:AuditError")
    assert {r.code for r in EXIT_TABLE} == {ExitCode.VERIFY_FAILED, ExitCode.USAGE, ExitCode.ENTROPY}


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
