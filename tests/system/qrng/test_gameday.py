"""The game day's entropy-core layer at small scale (issue 22): every SIMULATOR fault a health test can see
releases 0 bytes of post-onset output and is detected within one block; a slow drift is detected later with what
it released counted; a mild entropy loss that keeps the claim is not a failure, and says so; docs/gameday.md is
what this run measures (regenerate with `qrng gameday run --write-docs`)."""

from __future__ import annotations

from qrng.gameday import SMALL, USB_FAULTS, run_matrix
from qrng_cli.gameday import DOC, gameday_doc


def test_the_matrix_at_small_scale_and_its_document():
    out = {o.fault: o for o in run_matrix(SMALL)}
    for fault in ("stuck-at stuck_at value=0", "F4 repeating_pattern period=4", "F1 low_entropy factor=0.01",
                  "F6 saturation factor=40"):
        o = out[fault]
        assert "health test" in o.detected_by and o.bytes_after_onset == 0, o
        assert o.samples_to_detection is not None and o.samples_to_detection < 8192, o  # inside the first block
    assert out["F7 supply_failure"].detected_by == "source error (no samples)"
    assert out["F7 supply_failure"].bytes_after_onset == 0
    drift = out["F2 bias_drift rate=0.0002"]
    assert "APT" in drift.detected_by and drift.samples_to_detection and drift.bytes_after_onset > 0  # counted
    mild = out["F1 low_entropy factor=0.5 (with periodic assessment)"]
    assert mild.samples_to_detection is None and "at or above the claimed" in mild.detail
    for key, value in USB_FAULTS:  # every bus fault, removal and the stuck device release nothing after the onset
        o = out[f"USB EMULATOR {key}={value}"]
        if value == "short":
            assert o.samples_to_detection is None and "not a failure" in o.detected_by, o
        else:
            assert o.bytes_after_onset == 0 and o.samples_to_detection is not None, o
            assert o.samples_to_detection < 8192, o
    assert gameday_doc(list(out.values()), SMALL) == DOC.read_text(), \
        "docs/gameday.md is stale: run `qrng gameday run --write-docs`"


def test_every_row_around_the_core_names_a_test_that_exists():
    from pathlib import Path

    from qrng.gameday import AROUND
    root = Path(__file__).resolve().parents[3]
    for fault, _, _, test in AROUND:
        path, name = test.split("::")
        assert f"def {name}(" in (root / path).read_text(), (fault, test)
