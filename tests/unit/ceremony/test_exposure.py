"""The runbooks' key-rotation decision (issue 22): `qrng gameday exposure` lists the keys whose ceremony drew
entropy, or which were generated, in an exposure window, from the verified signed log."""

from __future__ import annotations

import datetime
import json
import shlex

import pytest

import qrng_cli
from ceremony.exposure import exposed_keys, parse_time
from ceremony.runner import Ceremony
from qrng_cli.ceremony import _verify_command

from .conftest import make_plan_workspace
from .fake_hsm import FakeHsm
from .test_runner import _plan

T = "2026-12-06T10:{:02d}:00.000000Z"
LOG = [
    {"event": "entropy.committed", "time": T.format(0), "ceremony": "c"},
    {"event": "key.generated", "time": T.format(5), "ceremony": "c", "data": {"label": "root", "key": "EC P-384"}},
    {"event": "entropy.extracted", "time": T.format(20), "ceremony": "c"},
    {"event": "key.generated", "time": T.format(25), "ceremony": "c", "data": {"label": "issuing", "key": "EC P-256"}},
]


@pytest.mark.parametrize(("start", "end", "labels"), [
    (1, 6, ["root"]),               # only the first key's generation is inside
    (15, 21, ["issuing"]),          # entropy drawn inside, the key made after the window ends
    (0, 30, ["root", "issuing"]),
    (30, 40, []),                   # after everything
    (6, 19, []),                    # between: nothing drawn or generated
])
def test_exposed_keys(start, end, labels):
    got = exposed_keys(LOG, parse_time(T.format(start)), parse_time(T.format(end)))
    assert [k.label for k in got] == labels


def test_times_without_a_zone_are_utc_and_bad_times_are_named():
    assert parse_time("2026-12-06T10:00:00") == datetime.datetime(2026, 12, 6, 10, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="--from 'yesterday': not an ISO 8601 time"):
        parse_time("yesterday", "--from")


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory):
    ws = make_plan_workspace(tmp_path_factory.mktemp("exposure"))
    plan = _plan(ws)
    result = Ceremony(plan, FakeHsm()).run()
    argv = shlex.split(_verify_command(plan, result))
    return result.output / "audit.log", argv[argv.index("--key") + 1]


def test_the_command_lists_the_ceremonys_keys_from_the_verified_log(ceremony, capsys):
    log, key = ceremony
    code = qrng_cli.main(["gameday", "exposure", str(log), "--from", "2000-01-01T00:00:00Z",
                          "--to", "2100-01-01T00:00:00Z", "--key", key, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["unverified_logs"] == []
    made = [json.loads(x)["data"]["label"] for x in log.read_text().splitlines()
            if json.loads(x).get("event") == "key.generated"]
    assert made and sorted(k["label"] for k in out["keys"]) == sorted(made)
    assert all(k["log_verified"] and k["public_key_sha256"] for k in out["keys"])
    assert qrng_cli.main(["gameday", "exposure", str(log), "--from", "2000-01-01T00:00:00Z", "--to",
                          "2000-01-02T00:00:00Z", "--key", key]) == 0
    assert "0 key(s) to revoke" in capsys.readouterr().out


def test_an_unverified_log_is_listed_but_is_not_a_decision(ceremony, capsys):
    log, _ = ceremony
    code = qrng_cli.main(["gameday", "exposure", str(log), "--from", "2000-01-01T00:00:00Z",
                          "--to", "2100-01-01T00:00:00Z"])
    out, err = capsys.readouterr()
    assert code == 4 and "[log NOT VERIFIED]" in out and "not a decision" in err
    assert qrng_cli.main(["gameday", "exposure", str(log), "--from", "2100-01-01", "--to", "2000-01-01"]) == 2
    assert "is before --from" in capsys.readouterr().err


@pytest.mark.parametrize(("entry", "said"), [
    ({"event": "key.generated", "time": "garbage"}, "entry 1: time 'garbage': not an ISO 8601 time"),
    ({"event": "key.generated"}, "entry 1: 'time' must be a string, not NoneType"),
    ({"event": "entropy.committed", "time": None}, "entry 1: 'time' must be a string, not NoneType"),
    ([1, 2], "entry 1 is not a ceremony log entry (a JSON list, not an object)"),
    ({"event": "key.generated", "time": T.format(1), "data": "root"}, "entry 1: 'data' must be an object, not str"),
    ({"event": "key.generated", "time": T.format(1), "data": {"label": 7}}, "entry 1: 'label' must be a string"),
])
def test_an_entry_that_is_no_ceremony_entry_is_named_not_a_traceback(tmp_path, monkeypatch, capsys, entry, said):
    import qrng_cli.gameday as gameday
    monkeypatch.setattr(gameday, "_entries", lambda path, keys: ([{"event": "other"}, entry], True))
    code = qrng_cli.main(["gameday", "exposure", str(tmp_path / "x.log"), "--from", "2026-01-01", "--to", "2027-01-01"])
    err = capsys.readouterr().err
    assert code == 2 and f"x.log: {said}" in err and "Traceback" not in err, err
