"""Conditioning a trained diffusion model: a guidance function, and classifier-free guidance.

A diffusion model learns ``p(x)``; control asks for ``p(x | y)``: a trajectory with a high return, a
plan that ends at a goal. Besides inpainting (``diffuser.apply_conditioning``: known entries written
into every sample), there are two ways, both changes to the reverse process.

**Guidance function** (classifier guidance, Sohl-Dickstein et al. 2015, Dhariwal & Nichol 2021;
Diffuser's section 3.2, Janner et al. 2022). Target ``p(x) exp(J(x))``. If each reverse step is a
Gaussian ``N(mu, Sigma)`` with small ``Sigma``, tilting it by ``exp(J)`` shifts its mean to first
order,

    x_{t-1} ~ N(mu + alpha Sigma grad J(x_t), Sigma),

where ``J(x_t, t)`` is a network trained to predict the return of the *clean* sample from the
noisy one (``value_loss``) and ``alpha`` the guidance scale. Diffuser's code applies the shift to
``x_t`` before the denoiser sees it, ``n_guide_steps`` times, with the gradient scaled by the step's
variance, and stops guiding below a step ``t_stopgrad`` (``guided_sample_loop``). Nothing in the
denoiser changes: one model, any number of rewards.

**Classifier-free guidance** (Ho & Salimans 2022; Decision Diffuser, Ajay et al. 2023). Train one
network ``f(x_t, t, c)`` on pairs ``(x, c)``, replacing ``c`` by a null token with probability
``p_uncond`` (``drop_condition``), so that it is both the conditional and the unconditional model.
At sampling, extrapolate from the unconditional prediction towards the conditional one,

    f_w(x_t, t, c) = f(x_t, t, null) + w (f(x_t, t, c) - f(x_t, t, null)),

``w = 0`` unconditional, ``w = 1`` conditional, ``w > 1`` sharper than the data's conditional (the
implicit classifier ``p(c | x)`` raised to the power ``w``): fewer misses, less diversity
(``cfg_denoiser``). It needs no value network, but the condition is fixed at training time.

Shapes are those of the sampler: any ``x: (B, ...)``, e.g. points ``(B, 2)`` or trajectories ``(B, H, D)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .ddpm import GaussianDiffusion

__all__ = ["value_loss", "value_gradient", "guided_sample_loop", "with_keep_flag", "drop_condition", "cfg_denoiser"]


def value_loss(value_net, diffusion: GaussianDiffusion, x0: torch.Tensor, returns: torch.Tensor,
               generator: torch.Generator | None = None,
               condition: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``E_{t, eps} (J(x_t, t) - R(x_0))^2``: a value of noisy samples, for guidance.

    ``x_t = q_sample(x_0, t)`` at a uniform random step; ``condition`` (if given) is applied to
    ``x_t`` as the sampler will (e.g. inpainting the start and goal), so the value sees what the
    guided sampler shows it. ``x0: (B, ...)``, ``returns: (B,)``.
    """
    if returns.shape != (x0.shape[0],):
        raise ValueError(f"returns must have shape ({x0.shape[0]},), one per sample, got {tuple(returns.shape)}")
    t = diffusion.sample_timesteps(x0.shape[0], generator)
    x_t = diffusion.q_sample(x0, t, generator=generator)
    if condition is not None:
        x_t = condition(x_t)
    return F.mse_loss(value_net(x_t, t), returns)


def value_gradient(value_fn, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J(x, t), grad_x sum J(x, t))``: the values ``(B,)`` and their gradient, shaped like ``x``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        values = value_fn(x, t)
        grad, = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad


@torch.no_grad()
def guided_sample_loop(model, diffusion: GaussianDiffusion, value_fn, shape: tuple, scale: float,
                       n_guide_steps: int = 1, t_stopgrad: int = 0, scale_grad_by_std: bool = True,
                       condition: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                       return_trajectory: bool = False):
    """DDPM sampling of ``p(x) exp(J(x))`` with a guidance function (Diffuser's guided sampler).

    At each step ``t = T-1 .. 0``:

    1. ``n_guide_steps`` times: ``x <- c(x + scale * Sigma_t * grad_x J(x, t))`` (``Sigma_t`` the step's
       posterior variance if ``scale_grad_by_std``, else 1; no shift when ``t < t_stopgrad``);
    2. ``x <- c(mu(x, t) + sqrt(Sigma_t) z)``, the ordinary ancestral step (no noise at ``t = 0``),

    with ``c`` the ``condition`` (inpainting; identity if ``None``). ``scale = 0`` is exactly
    ``diffusion.p_sample_loop``. Returns ``(B, ...)``, or ``(T + 1, B, ...)`` with
    ``return_trajectory``.
    """
    if n_guide_steps < 0 or t_stopgrad < 0:
        raise ValueError(f"n_guide_steps and t_stopgrad must be >= 0, got {n_guide_steps} and {t_stopgrad}")
    cond = condition if condition is not None else (lambda x: x)
    x = cond(torch.randn(shape, generator=generator, device=diffusion.device) if x_T is None else x_T)
    traj = [x]
    for t in reversed(range(diffusion.n_diffusion_steps)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        var = diffusion.posterior_variance[t]
        if scale != 0 and t >= t_stopgrad:
            for _ in range(n_guide_steps):
                _, grad = value_gradient(value_fn, x, tt)
                x = cond(x + scale * (var if scale_grad_by_std else 1.0) * grad)
        mean, var_t, _ = diffusion.p_mean_variance(model, x, tt)
        x = mean if t == 0 else mean + var_t.sqrt() * torch.randn(x.shape, generator=generator, device=x.device)
        x = cond(x)
        if return_trajectory:
            traj.append(x)
    return torch.stack(traj) if return_trajectory else x


def with_keep_flag(cond: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The network's condition input ``[keep * c, keep]``: ``(B, K), (B,) -> (B, K + 1)``.

    ``keep = 0`` is the null token (all zeros but for the flag), distinct from any real ``c``,
    even ``c = 0``.
    """
    keep = keep.to(cond.dtype).reshape(-1, 1)
    if cond.ndim != 2 or keep.shape[0] != cond.shape[0]:
        raise ValueError(f"cond must be (B, K) and keep (B,), got {tuple(cond.shape)} and {tuple(keep.shape)}")
    return torch.cat([cond * keep, keep], dim=-1)


def drop_condition(cond: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Condition dropout for classifier-free guidance: ``(B, K) -> (B, K + 1)``, null with prob. ``p_uncond``."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond}")
    keep = torch.rand(cond.shape[0], generator=generator, device=cond.device) >= p_uncond
    return with_keep_flag(cond, keep)


def cfg_denoiser(model, cond: torch.Tensor, weight: float):
    """``(x, t) -> f(x, t, null) + w (f(x, t, c) - f(x, t, null))`` for a sampler.

    ``model(x, t, c_in)`` takes ``c_in = with_keep_flag(c, keep)``; ``cond: (B, K)`` the raw condition.
    Both predictions come from one batched call (``2B`` rows). With ``weight = 1`` this is the
    conditional model, with ``0`` the unconditional one. Works for noise or clean-sample prediction
    alike: for a fixed ``x_t`` the two are affine in each other, so mixing one mixes the other.
    """
    B = cond.shape[0]
    both = torch.cat([with_keep_flag(cond, torch.ones(B, device=cond.device)),
                      with_keep_flag(cond, torch.zeros(B, device=cond.device))])

    def f(x, t):
        if weight == 1:
            return model(x, t, both[:B])
        out = model(torch.cat([x, x]), torch.cat([t, t]), both)
        conditional, unconditional = out[:B], out[B:]
        return unconditional + weight * (conditional - unconditional)
    return f
