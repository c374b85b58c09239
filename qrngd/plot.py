"""``qrng status --plot FILE.png``: the daemon's recent history (HISTORY, docs/daemon-protocol.md) as one PNG:
the SP 800-90B estimate per source against its claim, health-test failures, and raw sample and served seed
rates over time. matplotlib's object API with the Agg canvas (no pyplot, no display)."""

from __future__ import annotations

import datetime
import io
from typing import Any

__all__ = ["plot_history"]


def plot_history(history: dict[str, Any], status: dict[str, Any]) -> tuple[bytes, int]:
    """The PNG's bytes and the number of points drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = [datetime.datetime.fromtimestamp(x, datetime.UTC) for x in history.get("t", [])]
    claims = {s["name"]: s.get("claimed_min_entropy") for s in status.get("sources", [])}
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_h, ax_f, ax_r = fig.subplots(3, 1, sharex=True)
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
                  label=f"{name} raw samples (M/s)")
    ax_r.plot(t, [v / 1e3 for v in history.get("served_bytes_per_s", [])], label="served seed (kB/s)")
    ax_h.set_ylabel("min-entropy\nbits/sample")
    ax_f.set_ylabel("health-test\nfailures (total)")
    ax_r.set_ylabel("rate")
    ax_r.set_xlabel("time (UTC)")
    from matplotlib.dates import DateFormatter
    ax_r.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    for ax in (ax_h, ax_f, ax_r):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    if t and not any(v is not None for s in history.get("sources", {}).values() for v in s.get("estimate", [])):
        ax_h.text(0.5, 0.5, "no SP 800-90B assessment configured (assessment.every_samples)", ha="center",
                  transform=ax_h.transAxes, fontsize=8)
    if not t:
        ax_h.text(0.5, 0.5, "no history yet (the daemon records a point every "
                  f"{history.get('interval_s', '?')} s)", ha="center", transform=ax_h.transAxes)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue(), len(t)
