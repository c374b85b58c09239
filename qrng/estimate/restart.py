"""SP 800-90B section 3.1.4: restart tests on an r x c restart matrix (1000 x 1000 by default)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..health import critbinom
from .nonid import Array, assess_non_iid

__all__ = ["RestartResult", "restart_tests"]


@dataclass(frozen=True)
class RestartResult:
    passed: bool
    reason: str
    max_row_count: int
    max_column_count: int
    cutoff: int
    h_rows: float | None
    h_columns: float | None
    h_assessed: float | None


def restart_tests(matrix: Array, bits_per_symbol: int, h_initial: float) -> RestartResult:
    """3.1.4.2 sanity check (the most common value in any row or column must not exceed the binomial cutoff at
    alpha = 0.01 / (r + c)), then 3.1.4.3: entropy of the row and column datasets; the restart validation fails
    if the smaller is below half of H_I, else the assessment is min(H_I, H_r, H_c)."""
    m = np.ascontiguousarray(matrix, dtype=np.uint8)
    r, c = m.shape
    p = 2.0 ** -h_initial
    alpha = 0.01 / (r + c)
    cutoff = critbinom(max(r, c), p, 1.0 - alpha)
    fr = max(int(np.bincount(row).max()) for row in m)
    fc = max(int(np.bincount(col).max()) for col in m.T)
    if max(fr, fc) > cutoff:
        return RestartResult(False, f"sanity check: a symbol occurs {max(fr, fc)} times in one row or column "
                             f"(cutoff {cutoff})", fr, fc, cutoff, None, None, None)
    hr = assess_non_iid(m.reshape(-1), bits_per_symbol).h_assessed
    hc = assess_non_iid(m.T.reshape(-1).copy(), bits_per_symbol).h_assessed
    if min(hr, hc) < h_initial / 2:
        return RestartResult(False, f"row/column entropy {min(hr, hc):.4f} is below half of H_I {h_initial:.4f}",
                             fr, fc, cutoff, hr, hc, None)
    return RestartResult(True, "passed", fr, fc, cutoff, hr, hc, min(h_initial, hr, hc))


