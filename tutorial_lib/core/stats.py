"""Uncertainty of measured results: means and success rates with 95 % intervals.

Every success rate or mean the book reports comes with its interval and the number of episodes:

- a mean of per-episode scores: ``mean ± t_{0.975, n-1} · s / √n`` (Student's t interval);
- a success rate ``k / n``: the Wilson score interval, which stays inside [0, 1] and does not
  collapse to a point at 0 or 1 as the normal approximation does.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean_ci95", "wilson_ci95", "summarize_scores", "summarize_success"]

_Z95 = 1.959963984540054
# Two-sided 97.5 % quantiles of Student's t for n - 1 = 1..30 degrees of freedom; beyond 30 the
# normal quantile is within 4 % of them.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else _Z95 + 2.4 / dof   # the 1/dof correction of t to z


def mean_ci95(values) -> tuple[float, float]:
    """Mean of ``values`` (n,) and the half-width of its 95 % t interval (0 for n = 1)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if x.size == 1:
        return float(x[0]), 0.0
    return float(x.mean()), float(_t975(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval ``(low, high)`` of a success rate ``successes / n``."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_ci95 needs 0 <= successes <= n and n > 0; got {successes} of {n}")
    p, z2 = successes / n, _Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize_scores(values, digits: int = 4) -> dict:
    """``{"mean", "ci95", "n_episodes"}`` of per-episode scores: ci95 is the half-width of the mean's interval."""
    mean, half = mean_ci95(values)
    return {"mean": round(mean, digits), "ci95": round(half, digits), "n_episodes": int(np.size(values))}


def summarize_success(flags, digits: int = 4) -> dict:
    """``{"rate", "ci95", "n_episodes"}`` of per-episode successes: ci95 is the Wilson interval ``[low, high]``."""
    f = np.asarray(flags, dtype=bool).ravel()
    low, high = wilson_ci95(int(f.sum()), f.size)
    return {"rate": round(float(f.mean()), digits), "ci95": [round(low, digits), round(high, digits)],
            "n_episodes": int(f.size)}
