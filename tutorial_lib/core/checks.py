"""Claims checked with tolerances: the numbers a lesson relies on, asserted within a measured band.

A notebook's training runs and roll-outs print numbers whose last digits depend on the machine
(another CPU's vector kernels, a GPU, another torch build), so comparing them as text fails for a
reader whose lesson still holds. Such a result cell is marked machine-dependent, and the cell after
it checks what the text *claims*, with a band derived from a measured spread::

    expect(dp["mean_max_coverage"], near=0.94, tol=0.03,
           claim="the diffusion policy's mean max coverage on 50 starts")

prints one line that is the same on every machine (the claim and its band, never the measured
value), and raises :class:`ClaimError`, naming the claim, the value and the band, when it fails.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["ClaimError", "expect", "expect_each"]


class ClaimError(AssertionError):
    """A lesson's claim did not hold on this machine: its value left the stated band."""


def _band(near, tol, between, at_least, at_most) -> tuple[float, float]:
    given = [near is not None, between is not None, at_least is not None or at_most is not None]
    if sum(given) != 1:
        raise ValueError("give exactly one of: near= with tol=, between=(low, high), at_least= / at_most=")
    if near is not None:
        if tol is None or tol < 0:
            raise ValueError(f"near={near} needs a tolerance tol >= 0; got tol={tol}")
        return float(near) - float(tol), float(near) + float(tol)
    if between is not None:
        low, high = between
        if low > high:
            raise ValueError(f"between=({low}, {high}): low must not exceed high")
        return float(low), float(high)
    return (-math.inf if at_least is None else float(at_least)), (math.inf if at_most is None else float(at_most))


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _describe(low: float, high: float, near, tol, digits: int) -> str:
    if near is not None:
        return f"{_fmt(near, digits)} ± {_fmt(tol, digits)}"
    if math.isinf(low) and math.isinf(high):
        return "any value"
    if math.isinf(low):
        return f"at most {_fmt(high, digits)}"
    if math.isinf(high):
        return f"at least {_fmt(low, digits)}"
    return f"between {_fmt(low, digits)} and {_fmt(high, digits)}"


def expect(value, *, claim: str, near=None, tol=None, between=None, at_least=None, at_most=None,
           digits: int = 2, quiet: bool = False) -> None:
    """Check that a machine-dependent number supports a claim, and print the claim.

    Exactly one band: ``near`` and ``tol`` (the band ``[near - tol, near + tol]``), ``between=(low,
    high)``, or ``at_least`` and/or ``at_most``. The bounds are inclusive. The printed line holds the
    claim and the band only, so it repeats on every machine; the measured value appears in the
    error when the check fails. Nothing is returned, so a check as a cell's last line shows no value.

    Args:
        value: a number (a Python float, a NumPy or a one-element torch scalar).
        claim: what the number means, in words; it names the check in the output and in the error.
        digits: decimals of the band in the printed line.
        quiet: do not print (for use inside a library function).

    Raises:
        ClaimError: the value is outside the band, or is not finite.
        ValueError: the band is malformed.
    """
    if not claim or not isinstance(claim, str):
        raise ValueError("expect needs claim='...': the words that say what the number supports")
    low, high = _band(near, tol, between, at_least, at_most)
    v = float(value.item() if hasattr(value, "item") else value)
    band = _describe(low, high, near, tol, digits)
    if not math.isfinite(v) or not (low <= v <= high):
        raise ClaimError(f"claim does not hold: {claim}: measured {v!r}, expected {band} "
                         f"(the band [{low:g}, {high:g}] was set from the spread measured across machines and seeds)")
    if not quiet:
        print(f"✓ {claim}: {band}")


def expect_each(values: Iterable, *, claim: str, near=None, tol=None, between=None, at_least=None,
                at_most=None, digits: int = 2) -> None:
    """:func:`expect` for every element of ``values`` (e.g. one number per seed); one printed line.

    Raises:
        ClaimError: naming the claim and the index of the first element outside the band.
    """
    arr = np.asarray([float(v.item() if hasattr(v, "item") else v) for v in values], dtype=float)
    if arr.size == 0:
        raise ValueError(f"expect_each({claim!r}) got no values")
    for i, v in enumerate(arr):
        try:
            expect(v, claim=claim, near=near, tol=tol, between=between, at_least=at_least, at_most=at_most,
                   digits=digits, quiet=True)
        except ClaimError as err:
            raise ClaimError(f"{err} [element {i} of {arr.size}]") from None
    low, high = _band(near, tol, between, at_least, at_most)
    print(f"✓ {claim} (all {arr.size}): {_describe(low, high, near, tol, digits)}")
