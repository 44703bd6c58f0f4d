"""Sample-quality numbers: energy distance and its ratio to a data-vs-data baseline."""

from __future__ import annotations

import torch

__all__ = ["energy_distance", "quality_ratio"]


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between two samples (Székely & Rizzo 2013).

    The V-statistic: all pairs are averaged, including a point with itself, so the value is
    non-negative and zero only for identical samples. It is zero in the limit iff the laws agree.
    Shapes: x ``(N, D)``, y ``(M, D)``.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return (2 * xy - xx - yy).item()


def quality_ratio(samples: torch.Tensor, reference: torch.Tensor, heldout: torch.Tensor) -> float:
    """``ED(samples, heldout) / ED(reference, heldout)``: 1 means "as close as fresh data".

    ``reference`` is a second sample of real data of the same size as ``samples``: the
    denominator is the distance that finite sample size alone produces.
    """
    if len(samples) != len(reference):
        raise ValueError(f"samples and reference must have the same size, got {len(samples)} and {len(reference)}")
    return energy_distance(samples, heldout) / energy_distance(reference, heldout)
