"""Interruptions (issue 19, section 4): a closed output or a signal stops a ceremony like Ctrl-C. No step is logged
as failed, nothing signed is lost, the same command resumes, and `plan` says where. On the in-memory FakeHsm; the
real command with `| head -1` and SIGTERM is in tests/system/ceremony/test_interruptions.py."""

from __future__ import annotations

import pytest

import qrng_cli
from ceremony.runner import Ceremony
from ceremony.verify import verify_folder
from qrng_cli.ceremony import _progress_so_far
from qrng_cli.common import SIGPIPE_EXIT, Interrupted
from transparency.note import Verifier

from .fake_hsm import FakeHsm
from .test_runner import _events, _plan, _verifiers


@pytest.mark.parametrize("after", [1, 4, 9])
def test_a_closed_output_is_an_interruption_not_a_failed_step(ws, after):
    """Regression: `qrng ceremony run ... | head -1` exited 0 and logged step.failed "Broken pipe"."""
    plan = _plan(ws)
    said: list[str] = []

    def progress(msg: str) -> None:
        said.append(msg)
        if len(said) == after:
            raise Interrupted("the output was closed", SIGPIPE_EXIT)
    with pytest.raises(Interrupted):
        Ceremony(plan, FakeHsm(), progress).run()
    out = plan.script.output
    assert not any(e["event"] == "step.failed" for e in _events(out))
    state = _progress_so_far(plan)
    assert state is not None and state["next"] is not None and "will resume at step" in state["summary"]
    hsm = FakeHsm()
    again = Ceremony(plan, hsm).run()
    assert again.steps_run and again.steps_run[0] == state["next"]
    assert len(set(again.steps_run) | set(again.steps_skipped)) == len(plan.script.steps)
    report = verify_folder(out, [Verifier.parse((out / "log.pub").read_text())], _verifiers(ws))
    assert report.verdict.complete


def test_plan_on_a_finished_ceremony_says_so(ws, capsys):
    plan = _plan(ws)
    assert _progress_so_far(plan) is None
    Ceremony(plan, FakeHsm()).run()
    assert "records every step as done" in _progress_so_far(plan)["summary"]


def test_main_never_reports_an_interruption_as_success(monkeypatch, capsys):
    import qrng_cli.audit as audit

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(audit, "cmd_show", closed)
    assert qrng_cli.main(["audit", "show", "x.log"]) == 141

    def term(args):
        raise Interrupted("SIGTERM", 143, "run it again")
    monkeypatch.setattr(audit, "cmd_show", term)
    assert qrng_cli.main(["audit", "show", "x.log"]) == 143
    assert "interrupted (SIGTERM); run it again" in capsys.readouterr().err

    def ctrl_c(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(audit, "cmd_show", ctrl_c)
    assert qrng_cli.main(["audit", "show", "x.log"]) == 130
