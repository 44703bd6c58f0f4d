"""Model-based diffusion (MBD): trajectory optimization by a diffusion whose score comes from roll-outs.

Pan, Yi, Shi and Qu (NeurIPS 2024), "Model-Based Diffusion for Trajectory Optimization". No data and no
network: the target is ``p_0(Y) ∝ exp(-J(Y) / lambda)`` over control sequences ``Y: (T, D)``, and the score
of its Gaussian-smoothed versions ``p_i`` is estimated by Monte Carlo from roll-outs of the known model.

Forward process (as in DDPM): ``Y_i = sqrt(abar_i) Y_0 + sqrt(1 - abar_i) eps``, ``abar_i = prod_{k<=i} alpha_k``.
Score of ``p_i`` (Tweedie): ``grad log p_i(Y_i) = (sqrt(abar_i) E[Y_0 | Y_i] - Y_i) / (1 - abar_i)``.
As a function of ``Y_0`` the forward kernel is ``N(Y_0; Y_i / sqrt(abar_i), (1 / abar_i - 1) I)``, so

    E[Y_0 | Y_i] ≈ Ybar_0 = sum_k w_k Y_0^k,   Y_0^k ~ N(Y_i / sqrt(abar_i), (1 / abar_i - 1) I),
    w_k = softmax_k(-J(Y_0^k) / lambda)                                   (Monte Carlo, K roll-outs)

and the reverse step (the paper's Monte Carlo score ascent, no added noise) is

    Y_{i-1} = (Y_i + (1 - abar_i) grad log p_i(Y_i)) / sqrt(alpha_i)  =  sqrt(abar_{i-1}) Ybar_0.

So each step samples around the current estimate ``Ybar_i = Y_i / sqrt(abar_i)`` with the noise level
``sigma_i = sqrt(1 / abar_i - 1)``, which falls as ``i`` goes down, and moves to the weighted mean. With one
step it is one MPPI update (``mppi_optimize`` with ``n_iterations=1`` and ``sigma = sigma_1``); with a
constant noise level it is iterated MPPI. Samples are clipped to the box ``[low, high]`` before the roll-out.

``cost_fn`` is any batched roll-out-and-cost function: ``Y: (K, T, D) -> J: (K,)``; this module knows
nothing of mazes. Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

CostFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PlanResult:
    """What a sampling optimizer returns.

    Attributes:
        controls: ``(T, D)`` the final estimate (MBD's ``Ybar_0``, MPPI's nominal, CEM's mean).
        cost: ``J(controls)``, a float.
        cost_history: ``(n_iterations,)`` the cost of the estimate after each step.
        sigmas: ``(n_iterations,)`` the sampling noise level of each step.
        rollouts: how many sequences were rolled out to sample (``n_iterations * n_samples``; the one
            roll-out per step that scores the estimate for ``cost_history`` is not counted).
        samples: per step, ``(n_record, T, D)`` the first sampled sequences (empty unless asked for).
    """

    controls: torch.Tensor
    cost: float
    cost_history: torch.Tensor
    sigmas: torch.Tensor
    rollouts: int
    samples: list = field(default_factory=list)


def mbd_schedule(n_diffusion_steps: int, beta_start: float = 2e-3, beta_end: float = 0.1):
    """Linear ``beta_i`` from ``beta_start`` to ``beta_end`` (i = 1..N) and what MBD needs of it.

    Returns ``alphas: (N,)``, ``alphas_cumprod: (N,)`` (``abar_i``) and ``sigmas: (N,)``, the sampling
    noise ``sigma_i = sqrt(1 / abar_i - 1)`` around the estimate ``Ybar_i``, all float64; index ``i - 1``.
    """
    _check_int(n_diffusion_steps, "n_diffusion_steps")
    if not (0.0 < beta_start < 1.0 and 0.0 < beta_end < 1.0):
        raise ValueError(f"beta_start and beta_end must lie in (0, 1), got {beta_start!r}, {beta_end!r}")
    betas = torch.linspace(beta_start, beta_end, n_diffusion_steps, dtype=torch.float64)
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    return alphas, alphas_cumprod, torch.sqrt(1.0 / alphas_cumprod - 1.0)


def softmax_weights(costs: torch.Tensor, temperature: float, normalize: bool = True) -> torch.Tensor:
    """Weights ``w_k = softmax_k(-J_k / lambda)`` of sampled sequences, ``costs: (K,) -> (K,)``.

    With ``normalize=True`` the costs are first standardized, ``(J_k - mean J) / std J`` (as MBD's
    reference code does), so ``lambda`` is unitless and the same on every problem.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature (lambda) must be a finite number > 0, got {temperature!r}")
    if costs.ndim != 1 or not torch.all(torch.isfinite(costs)):
        raise ValueError(f"costs must be a finite (K,) tensor, got shape {tuple(costs.shape)}")
    if normalize:
        std = costs.std() if costs.numel() > 1 else costs.new_tensor(0.0)
        costs = (costs - costs.mean()) / (std if std > 1e-12 else 1.0)
    return torch.softmax(-costs / temperature, dim=0)


def mbd_optimize(cost_fn: CostFn, horizon: int, action_dim: int, n_diffusion_steps: int = 20,
                 n_samples: int = 256, temperature: float = 0.1, beta_start: float = 2e-3, beta_end: float = 0.1,
                 low: float = -1.0, high: float = 1.0, init: torch.Tensor | None = None, normalize: bool = True,
                 generator: torch.Generator | None = None, record_samples: int = 0) -> PlanResult:
    """Model-based diffusion (Pan et al. 2024, Algorithm 1): reverse diffusion with a Monte-Carlo score.

    For ``i = N, ..., 1`` (see the module docstring): sample ``Y_0^k = clip(Ybar_i + sigma_i eps_k)``,
    ``k = 1..K``; roll out and weight them, ``w = softmax(-J / lambda)``; ``Ybar_0 = sum_k w_k Y_0^k``;
    score ``s = (sqrt(abar_i) Ybar_0 - Y_i) / (1 - abar_i)``; ``Y_{i-1} = (Y_i + (1 - abar_i) s) / sqrt(alpha_i)``.

    Args:
        cost_fn: ``(K, T, D) -> (K,)`` roll-out cost of each control sequence.
        horizon, action_dim: ``T`` and ``D``.
        n_diffusion_steps: N >= 1; uses ``N * n_samples`` roll-outs.
        n_samples: K >= 2 sequences per step.
        temperature: lambda > 0 (unitless when ``normalize``).
        beta_start, beta_end: the linear ``beta`` schedule (``mbd_schedule``).
        low, high: the control box; samples are clipped to it.
        init: ``(T, D)`` the starting estimate ``Ybar_N`` (default zeros, the mean of ``Y_N ~ N(0, I)``).
        generator: the ``torch.Generator`` of the noise (CPU).
        record_samples: keep the first ``n`` samples of each step in ``PlanResult.samples``.

    Returns:
        ``PlanResult`` with ``controls: (T, D)``.
    """
    _check_int(n_samples, "n_samples", minimum=2)
    alphas, alphas_cumprod, sigmas = mbd_schedule(n_diffusion_steps, beta_start, beta_end)
    ybar = _start(init, horizon, action_dim, low, high)
    history, samples = [], []
    for i in reversed(range(n_diffusion_steps)):  # paper's i = N..1 is index i = N-1..0 here
        abar, alpha = alphas_cumprod[i], alphas[i]
        y_i = torch.sqrt(abar) * ybar                                     # Y_i = sqrt(abar_i) Ybar_i
        y0_samples, costs = _sample(cost_fn, ybar, sigmas[i], n_samples, low, high, generator)
        y0_mean = torch.einsum("k,ktd->td", softmax_weights(costs, temperature, normalize), y0_samples)
        score = (torch.sqrt(abar) * y0_mean - y_i) / (1.0 - abar)         # Tweedie, Monte Carlo E[Y_0 | Y_i]
        y_prev = (y_i + (1.0 - abar) * score) / torch.sqrt(alpha)         # reverse step, no added noise
        abar_prev = alphas_cumprod[i - 1] if i > 0 else abar.new_tensor(1.0)
        ybar = y_prev / torch.sqrt(abar_prev)                             # = y0_mean up to rounding
        history.append(float(_cost(cost_fn, ybar)))
        if record_samples:
            samples.append(y0_samples[:record_samples].clone())
    return PlanResult(ybar, history[-1], torch.tensor(history, dtype=torch.float64), sigmas.flip(0),
                      n_diffusion_steps * n_samples, samples)


def mppi_optimize(cost_fn: CostFn, horizon: int, action_dim: int, n_iterations: int = 20, n_samples: int = 256,
                  sigma: float = 0.5, temperature: float = 0.1, low: float = -1.0, high: float = 1.0,
                  init: torch.Tensor | None = None, normalize: bool = True,
                  generator: torch.Generator | None = None, record_samples: int = 0) -> PlanResult:
    """Iterated MPPI as an open-loop trajectory optimizer (Williams et al. 2017, the update of Algorithm 2).

    ``n_iterations`` times: ``V_k = clip(U + sigma eps_k)``, ``w = softmax(-J(V) / lambda)``, ``U <- sum_k w_k V_k``.
    The noise ``sigma`` stays constant: this is MBD without the annealing. Shapes and arguments as in
    ``mbd_optimize``; uses ``n_iterations * n_samples`` roll-outs.
    """
    _check_int(n_iterations, "n_iterations")
    _check_int(n_samples, "n_samples", minimum=2)
    _check_positive(sigma, "sigma")
    nominal = _start(init, horizon, action_dim, low, high)
    history, samples = [], []
    sigma_t = torch.tensor(float(sigma), dtype=torch.float64)
    for _ in range(n_iterations):
        controls, costs = _sample(cost_fn, nominal, sigma_t, n_samples, low, high, generator)
        nominal = torch.einsum("k,ktd->td", softmax_weights(costs, temperature, normalize), controls)
        history.append(float(_cost(cost_fn, nominal)))
        if record_samples:
            samples.append(controls[:record_samples].clone())
    return PlanResult(nominal, history[-1], torch.tensor(history, dtype=torch.float64),
                      torch.full((n_iterations,), float(sigma), dtype=torch.float64), n_iterations * n_samples, samples)


def cem_optimize(cost_fn: CostFn, horizon: int, action_dim: int, n_iterations: int = 20, n_samples: int = 256,
                 sigma: float = 0.5, elite_frac: float = 0.1, smoothing: float = 0.0, min_sigma: float = 0.02,
                 low: float = -1.0, high: float = 1.0, init: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> PlanResult:
    """Cross-entropy method (Rubinstein 1999; De Boer et al. 2005) over control sequences.

    ``n_iterations`` times: ``V_k = clip(mu + std * eps_k)``; the ``ceil(elite_frac * K)`` cheapest are the
    elites; ``mu <- (1 - a) mean(elites) + a mu``, ``std <- max((1 - a) std(elites) + a std, min_sigma)``
    with ``a = smoothing``. Per-entry ``std: (T, D)`` starts at ``sigma``. The elite mean is MPPI's update
    with equal weights on the best samples, i.e. the ``lambda -> 0`` end of the softmax, made robust.
    """
    _check_int(n_iterations, "n_iterations")
    _check_int(n_samples, "n_samples", minimum=2)
    _check_positive(sigma, "sigma")
    if not 0.0 < elite_frac <= 1.0:
        raise ValueError(f"elite_frac must lie in (0, 1], got {elite_frac!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")
    n_elite = max(2, math.ceil(elite_frac * n_samples))
    mean = _start(init, horizon, action_dim, low, high)
    std = torch.full_like(mean, float(sigma))
    history, sigmas = [], []
    for _ in range(n_iterations):
        eps = torch.randn((n_samples, *mean.shape), generator=generator, dtype=torch.float64)
        controls = (mean + std * eps).clamp(low, high)
        costs = _costs(cost_fn, controls)
        elites = controls[torch.argsort(costs)[:n_elite]]
        sigmas.append(float(std.mean()))
        mean = (1 - smoothing) * elites.mean(0) + smoothing * mean
        std = ((1 - smoothing) * elites.std(0) + smoothing * std).clamp_min(min_sigma)
        history.append(float(_cost(cost_fn, mean)))
    return PlanResult(mean, history[-1], torch.tensor(history, dtype=torch.float64),
                      torch.tensor(sigmas, dtype=torch.float64), n_iterations * n_samples)


# ---------------------------------------------------------------------------------------------- helpers
def _sample(cost_fn, center, sigma, n_samples, low, high, generator):
    """``K`` clipped Gaussian samples around ``center: (T, D)`` and their costs: ``(K, T, D)``, ``(K,)``."""
    eps = torch.randn((n_samples, *center.shape), generator=generator, dtype=torch.float64)
    samples = (center + sigma * eps).clamp(low, high)
    return samples, _costs(cost_fn, samples)


def _costs(cost_fn, controls):
    costs = torch.as_tensor(cost_fn(controls), dtype=torch.float64)
    if costs.shape != (len(controls),):
        raise ValueError(f"cost_fn must map (K, T, D) controls to (K,) costs; got {tuple(costs.shape)} "
                         f"for K = {len(controls)}")
    if not torch.all(torch.isfinite(costs)):
        raise ValueError("cost_fn returned NaN or inf; costs must be finite")
    return costs


def _cost(cost_fn, controls):
    return _costs(cost_fn, controls[None])[0]


def _start(init, horizon, action_dim, low, high):
    _check_int(horizon, "horizon")
    _check_int(action_dim, "action_dim")
    if not low < high:
        raise ValueError(f"the control box needs low < high, got low={low!r}, high={high!r}")
    if init is None:
        return torch.zeros(horizon, action_dim, dtype=torch.float64).clamp(low, high)
    init = torch.as_tensor(init, dtype=torch.float64)
    if init.shape != (horizon, action_dim):
        raise ValueError(f"init must have shape (horizon, action_dim) = ({horizon}, {action_dim}), "
                         f"got {tuple(init.shape)}")
    return init.clamp(low, high)


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(value, name):
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
