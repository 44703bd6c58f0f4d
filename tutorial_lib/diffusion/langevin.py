"""Langevin dynamics and annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1)."""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["langevin_dynamics", "annealed_langevin_dynamics", "geometric_sigmas"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
NoisyScoreFn = Callable[[torch.Tensor, float], torch.Tensor]


def langevin_dynamics(score_fn: ScoreFn, x0: torch.Tensor, step_size: float, n_steps: int,
                      generator: torch.Generator | None = None, return_trajectory: bool = False):
    """Sample ``p`` from its score alone: ``x_{i+1} = x_i + c grad log p(x_i) + sqrt(2c) eps_i``.

    As ``c -> 0`` and ``n_steps -> inf`` the iterates are distributed as ``p`` (Welling & Teh 2011).
    In practice the chain mixes only within the basin it starts in when modes are far apart.

    Args:
        score_fn: ``x (N, D) -> grad log p(x) (N, D)``.
        x0: ``(N, D)`` starting points.
        step_size: ``c > 0``.
    Returns:
        ``(N, D)`` final points, or ``(n_steps + 1, N, D)`` with ``return_trajectory``.
    """
    if step_size <= 0 or n_steps < 0:
        raise ValueError(f"need step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    x, traj = x0.clone(), [x0.clone()]
    for _ in range(n_steps):
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        x = x + step_size * score_fn(x) + math.sqrt(2 * step_size) * eps
        if return_trajectory:
            traj.append(x.clone())
    return torch.stack(traj) if return_trajectory else x


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """``n`` noise scales decreasing geometrically from ``sigma_max`` to ``sigma_min``. ``(n,)``."""
    if not 0 < sigma_min < sigma_max or n < 2:
        raise ValueError(f"need 0 < sigma_min < sigma_max and n >= 2, got {sigma_min}, {sigma_max}, {n}")
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n))


def annealed_langevin_dynamics(score_fn: NoisyScoreFn, x0: torch.Tensor, sigmas: torch.Tensor,
                               step_size: float, n_steps_each: int,
                               generator: torch.Generator | None = None,
                               return_trajectory: bool = False):
    """Langevin chains on ever less noisy versions of ``p`` (Song & Ermon 2019, Algorithm 1).

    For each noise scale ``sigma_1 > ... > sigma_L``, run ``n_steps_each`` Langevin steps on
    ``p_sigma = p * N(0, sigma^2 I)`` with step ``c_i = c * sigma_i^2 / sigma_L^2``::

        x <- x + c_i s(x, sigma_i) + sqrt(2 c_i) eps.

    At large sigma the noised modes overlap, so particles move between them and settle in
    proportion to the weights; later scales only sharpen. (Song & Ermon write the step as
    ``alpha_i / 2`` with ``alpha_i = 2 c_i``.)

    Args:
        score_fn: ``(x (N, D), sigma) -> grad log p_sigma(x) (N, D)``.
        x0: ``(N, D)`` starting points.
        sigmas: ``(L,)`` decreasing noise scales.
        step_size: ``c``, the step at the smallest scale.
    Returns:
        ``(N, D)``, or ``(L * n_steps_each + 1, N, D)`` with ``return_trajectory``.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    if sigmas.ndim != 1 or (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be a 1-D sequence of decreasing noise scales")
    x, traj = x0.clone(), [x0.clone()]
    sigma_last = sigmas[-1].item()
    for sigma in sigmas.tolist():
        c = step_size * sigma ** 2 / sigma_last ** 2
        for _ in range(n_steps_each):
            eps = torch.randn(x.shape, generator=generator, device=x.device)
            x = x + c * score_fn(x, sigma) + math.sqrt(2 * c) * eps
            if return_trajectory:
                traj.append(x.clone())
    return torch.stack(traj) if return_trajectory else x
