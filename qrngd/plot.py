"""``qrng status --plot FILE.png``: the daemon's recent history (HISTORY, docs/daemon-protocol.md) as one PNG:
the SP 800-90B estimate per source against its claim, health-test failures, the raw sample rate and the served
seed rate over time, each quantity on its own axis (its own unit). Outages (a source down) are shaded and each
health-test failure is marked on every axis, so what happened and when reads off the time axis. matplotlib's
object API with the Agg canvas (no pyplot, no display)."""

from __future__ import annotations

import datetime
import io
from typing import Any

__all__ = ["failure_times", "outages", "plot_history"]


def outages(t: list[Any], up: list[int | None]) -> list[tuple[Any, Any]]:
    """(start, end) of each run of points where the source was down (up == 0); an outage still going ends at the
    last point. Pure."""
    spans: list[tuple[Any, Any]] = []
    start = None
    for when, u in zip(t, up, strict=False):
        if u == 0 and start is None:
            start = when
        elif u != 0 and start is not None:
            spans.append((start, when))
            start = None
    if start is not None:
        spans.append((start, t[-1]))
    return spans


def failure_times(t: list[Any], failures: list[int | None]) -> list[Any]:
    """The points at which the count of health-test failures went up. Pure."""
    out, before = [], None
    for when, f in zip(t, failures, strict=False):
        if f is not None and before is not None and f > before:
            out.append(when)
        if f is not None:
            before = f
    return out


def plot_history(history: dict[str, Any], status: dict[str, Any]) -> tuple[bytes, int]:
    """The PNG's bytes and the number of points drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = [datetime.datetime.fromtimestamp(x, datetime.UTC) for x in history.get("t", [])]
    claims = {s["name"]: s.get("claimed_min_entropy") for s in status.get("sources", [])}
    fig = Figure(figsize=(9, 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_h, ax_f, ax_r, ax_s = fig.subplots(4, 1, sharex=True)
    axes = (ax_h, ax_f, ax_r, ax_s)
    sim = " (SIMULATOR / EMULATOR source: not quantum)" if any(s.get("simulator") for s in status.get("sources", [])) \
        else ""
    fig.suptitle(f"qrngd pid {status.get('pid')}: {status.get('state', '?').upper()}, one point every "
                 f"{history.get('interval_s', '?')} s{sim}", fontsize=10)
    for name, series in history.get("sources", {}).items():
        est = series.get("estimate", [])
        ax_h.plot(t, [float("nan") if v is None else v for v in est], marker=".", label=f"{name} estimate")
        if claims.get(name):
            ax_h.axhline(claims[name], linestyle="--", linewidth=1, label=f"{name} claim")
        ax_f.step(t, [float("nan") if v is None else v for v in series.get("failures", [])], where="post",
                  label=f"{name} RCT + APT failures")
        ax_r.plot(t, [float("nan") if v is None else v / 1e6 for v in series.get("raw_rate", [])],
                  label=f"{name} raw samples")
        for i, (a, b) in enumerate(outages(t, series.get("up", []))):
            for ax in axes:
                ax.axvspan(a, b, color="tab:red", alpha=0.15, label=f"{name} DOWN" if i == 0 and ax is ax_h else None)
        for i, when in enumerate(failure_times(t, series.get("failures", []))):
            for ax in axes:
                ax.axvline(when, color="tab:red", linestyle=":", linewidth=1,
                           label=f"{name} health-test failure" if i == 0 and ax is ax_f else None)
    ax_s.plot(t, [v / 1e3 for v in history.get("served_bytes_per_s", [])], label="served seed material")
    ax_h.set_ylabel("min-entropy\nbits/sample")
    ax_f.set_ylabel("health-test\nfailures (total)")
    ax_r.set_ylabel("raw samples\n(million/s)")
    ax_s.set_ylabel("served\n(kB/s)")
    ax_s.set_xlabel("time (UTC)")
    from matplotlib.dates import DateFormatter
    ax_s.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    if t and not any(v is not None for s in history.get("sources", {}).values() for v in s.get("estimate", [])):
        ax_h.text(0.5, 0.5, "no SP 800-90B estimate yet (the first needs assessment.window_samples samples; "
                  "every_samples 0 is off)", ha="center",
                  transform=ax_h.transAxes, fontsize=8)
    if not t:
        ax_h.text(0.5, 0.5, "no history yet (the daemon records a point every "
                  f"{history.get('interval_s', '?')} s)", ha="center", transform=ax_h.transAxes)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue(), len(t)
