"""Charts for the transcript, drawn with matplotlib as SVG (vector graphics in the PDF too). Deterministic: the
same data give the same bytes (no date in the metadata, a fixed id salt), so a transcript can be rendered again
and compared. No pyplot: each chart is its own Figure, nothing global is changed."""

from __future__ import annotations

import io
import re
from typing import Any

from .record import EstimatorChart, HealthChart

__all__ = ["estimator_svg", "health_svg"]

_RC: Any = {"svg.hashsalt": "qrng-ceremony", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 8.0,
       "axes.spines.top": False, "axes.spines.right": False}


def _svg(fig: object) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    assert isinstance(fig, Figure)
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline in HTML: no XML prolog, no DOCTYPE
    # scale with the page: keep the viewBox, let CSS set the size
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="chart"', text, count=1)


def estimator_svg(chart: EstimatorChart) -> str:
    import matplotlib
    from matplotlib.figure import Figure
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.6, 0.9 + 0.22 * len(chart.bars)))
        ax = fig.add_subplot()
        names = [n for n, _ in chart.bars]
        values = [v for _, v in chart.bars]
        colours = ["#b2182b" if v < chart.claimed else "#4a7bb7" for v in values]
        ax.barh(range(len(values)), values, color=colours, height=0.65)
        ax.set_yticks(range(len(values)), names)
        ax.invert_yaxis()
        ax.axvline(chart.claimed, color="#222", linestyle="--", linewidth=1.2,
                   label=f"claimed {chart.claimed:g} bits/sample")
        ax.axvline(chart.assessed, color="#d95f02", linewidth=1.2, label=f"assessed {chart.assessed:.3f}")
        top = max(values + [chart.claimed]) * 1.12
        ax.set_xlim(0, top)
        for i, v in enumerate(values):
            ax.text(v + top * 0.005, i, f"{v:.3f}", va="center", fontsize=7)
        ax.set_xlabel("min-entropy, bits per sample (SP 800-90B 6.3)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7, frameon=False)
        fig.tight_layout()
        return _svg(fig)


def health_svg(chart: HealthChart) -> str:
    import matplotlib
    from matplotlib.figure import Figure
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.6, 2.5))
        runs, apt = fig.subplots(1, 2)
        for ax, hist, cutoff, title, xlabel in (
                (runs, chart.run_lengths, chart.rct_cutoff, "Repetition count test (4.4.1)",
                 "run length (identical samples in a row)"),
                (apt, chart.apt_counts, chart.apt_cutoff, "Adaptive proportion test (4.4.2)",
                 f"count of the first sample in a window of {chart.window}")):
            xs = [x for x, _ in hist]
            ax.bar(xs, [n for _, n in hist], color="#4a7bb7", width=0.8)
            ax.set_yscale("log")
            ax.axvline(cutoff, color="#b2182b", linestyle="--", linewidth=1.2, label=f"cutoff {cutoff}")
            observed = max(xs) if xs else 0
            ax.axvline(observed, color="#222", linewidth=1.0, label=f"observed maximum {observed}")
            ax.set_xlim(0, max(cutoff, observed) + 2)
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("occurrences")
            ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return _svg(fig)
