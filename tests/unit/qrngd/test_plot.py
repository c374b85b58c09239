"""`qrng status --plot` (issue 22, on-call): outages and failures on the time axis, one axis per unit."""

from __future__ import annotations

import pytest

from qrngd.history import History, Snapshot
from qrngd.plot import failure_times, outages, plot_history


@pytest.mark.parametrize(("up", "want"), [
    ([1, 1, 1], []),
    ([1, 0, 0, 1, 1], [(1, 3)]),
    ([0, 1, 0], [(0, 1), (2, 2)]),          # an outage at the end lasts until the last point
    ([1, None, 0, 0], [(2, 3)]),            # a source not yet known is not an outage
])
def test_outages(up, want):
    assert outages(list(range(len(up))), up) == want


@pytest.mark.parametrize(("failures", "want"), [
    ([0, 0, 0], []),
    ([0, 1, 1, 3], [1, 3]),
    ([None, 2, 2, 5], [3]),                 # the first known count is where counting starts
])
def test_failure_times(failures, want):
    assert failure_times(list(range(len(failures))), failures) == want


def test_the_plot_draws_four_axes_with_an_outage_and_a_failure():
    h = History(interval=1.0)
    for i, (raw, fails, up) in enumerate([(0, 0, True), (100, 0, True), (150, 1, False), (150, 1, False),
                                          (300, 1, True)]):
        h.add(1000.0 + i, 64 * i, {"usb": Snapshot(raw, fails, 7.5 if up else None, up)})
    png, n = plot_history(h.to_dict(), {"pid": 1, "state": "healthy", "sources": [
        {"name": "usb", "claimed_min_entropy": 7.0, "simulator": True}]})
    assert n == 4 and png.startswith(b"\x89PNG") and len(png) > 10_000
    series = h.to_dict()["sources"]["usb"]
    assert outages(h.to_dict()["t"], series["up"]) and failure_times(h.to_dict()["t"], series["failures"])
