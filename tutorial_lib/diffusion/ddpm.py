"""Denoising diffusion: the forward process, DDPM ancestral sampling and DDIM.

Notation follows Ho et al. (2020): ``beta_t`` the noise added at step t, ``alpha_t = 1 - beta_t``,
``alphas_cumprod[t] = prod_{s<=t} alpha_s`` (written bar-alpha_t), steps ``t = 0 .. T-1``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["linear_beta_schedule", "cosine_beta_schedule", "make_beta_schedule", "GaussianDiffusion", "respace", "respaced_model"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_beta_schedule(n_diffusion_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """``beta_t`` rising linearly (Ho et al. 2020), rescaled so any T spans the same noise range.

    With T = 1000 this is exactly ``linspace(1e-4, 0.02, 1000)``. Returns ``(T,)`` float64.
    """
    scale = 1000.0 / n_diffusion_steps
    if scale * beta_end >= 1:
        raise ValueError(f"the linear schedule needs n_diffusion_steps > {int(1000 * beta_end)} "
                         f"(beta_end is rescaled by 1000 / T), got {n_diffusion_steps}; use 'cosine' for short chains")
    return torch.linspace(scale * beta_start, scale * beta_end, n_diffusion_steps, dtype=torch.float64)


def cosine_beta_schedule(n_diffusion_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """``bar-alpha_t = f(t) / f(0)``, ``f(t) = cos^2(((t/T + s) / (1 + s)) pi / 2)`` (Nichol & Dhariwal 2021).

    ``beta_t = 1 - bar-alpha_t / bar-alpha_{t-1}``, clipped at ``max_beta``. Returns ``(T,)`` float64.
    """
    steps = torch.arange(n_diffusion_steps + 1, dtype=torch.float64) / n_diffusion_steps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def make_beta_schedule(name: str, n_diffusion_steps: int) -> torch.Tensor:
    """``"linear"`` or ``"cosine"`` schedule of length ``n_diffusion_steps``."""
    if n_diffusion_steps < 1:
        raise ValueError(f"n_diffusion_steps must be >= 1, got {n_diffusion_steps}")
    schedules = {"linear": linear_beta_schedule, "cosine": cosine_beta_schedule}
    if name not in schedules:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {sorted(schedules)}")
    return schedules[name](n_diffusion_steps)


def _extract(a: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Gather ``a[t]`` per sample and reshape to ``(B, 1, ..., 1)`` for broadcasting."""
    return a[t].reshape(t.shape[0], *([1] * (ndim - 1)))


class GaussianDiffusion:
    """The forward process ``q``, the training loss and the samplers of a diffusion model.

    Args:
        betas: ``(T,)`` noise schedule.
        prediction: what the network predicts, ``"epsilon"`` (the noise, Ho et al. 2020) or
            ``"x0"`` (the clean sample, as Diffuser does).
        clip_denoised: clamp predicted clean samples to ``[-clip_denoised, clip_denoised]``
            (``None``: no clamping). Useful when data are scaled to [-1, 1].
    """

    def __init__(self, betas: torch.Tensor, prediction: str = "epsilon", clip_denoised: float | None = None):
        if prediction not in ("epsilon", "x0"):
            raise ValueError(f"prediction must be 'epsilon' or 'x0', got {prediction!r}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must be a 1-D tensor with every value in (0, 1)")
        self.prediction, self.clip_denoised = prediction, clip_denoised
        self.n_diffusion_steps = len(betas)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance)   (Ho et al., eq. 7)
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        tensors = dict(
            betas=betas, alphas=alphas, alphas_cumprod=alphas_cumprod, alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),                      # sqrt(bar-alpha_t)
            sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt(),      # sqrt(1 - bar-alpha_t)
            posterior_variance=posterior_variance,
            posterior_mean_coef1=betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            posterior_mean_coef2=(1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        )
        for k, v in tensors.items():
            setattr(self, k, v.float())
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> "GaussianDiffusion":
        """Move the schedule's tensors to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(self.device))
        return self

    # ----- forward process -------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0) = N(sqrt(bar-alpha_t) x_0, (1 - bar-alpha_t) I)``.

        Shapes: x0 ``(B, ...)``, t ``(B,)`` long  ->  ``(B, ...)``.
        """
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        return (_extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0
                + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)

    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform random steps ``t ~ U{0, ..., T-1}``. Returns ``(B,)`` long."""
        return torch.randint(0, self.n_diffusion_steps, (batch_size,), generator=generator, device=self.device)

    def training_loss(self, model: Denoiser, x0: torch.Tensor, generator: torch.Generator | None = None,
                      condition: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The simple loss ``E_{t, x_0, eps} || target - model(x_t, t) ||^2`` (Ho et al., Algorithm 1).

        ``target`` is ``eps`` or ``x_0`` depending on ``prediction``. ``condition``, if given, is
        applied to ``x_t`` before the network sees it (inpainting of known entries).
        """
        t = self.sample_timesteps(x0.shape[0], generator)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = self.q_sample(x0, t, noise)
        if condition is not None:
            x_t = condition(x_t)
        target = noise if self.prediction == "epsilon" else x0
        return F.mse_loss(model(x_t, t), target)

    # ----- reverse process -------------------------------------------------------------------
    def predict_eps_x0(self, model: Denoiser, x_t: torch.Tensor, t: torch.Tensor):
        """The network's estimates of the noise and of the clean sample at ``(x_t, t)``.

        ``x_0 = (x_t - sqrt(1 - bar-alpha_t) eps) / sqrt(bar-alpha_t)`` links the two.
        """
        out = model(x_t, t)
        a, b = _extract(self.sqrt_alphas_cumprod, t, x_t.ndim), _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
        if self.prediction == "epsilon":
            eps, x0 = out, (x_t - b * out) / a
        else:
            eps, x0 = (x_t - a * out) / b, out
        if self.clip_denoised is not None:
            x0 = x0.clamp(-self.clip_denoised, self.clip_denoised)
            eps = (x_t - a * x0) / b
        return eps, x0

    def p_mean_variance(self, model: Denoiser, x_t: torch.Tensor, t: torch.Tensor):
        """Mean and variance of ``p(x_{t-1} | x_t) = q(x_{t-1} | x_t, x_0 = x0_hat(x_t, t))``."""
        _, x0 = self.predict_eps_x0(model, x_t, t)
        mean = (_extract(self.posterior_mean_coef1, t, x_t.ndim) * x0
                + _extract(self.posterior_mean_coef2, t, x_t.ndim) * x_t)
        return mean, _extract(self.posterior_variance, t, x_t.ndim), x0

    @torch.no_grad()
    def p_sample(self, model: Denoiser, x_t: torch.Tensor, t: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """One ancestral step ``x_{t-1} = mu(x_t, t) + sigma_t z`` (no noise at t = 0)."""
        tt = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        mean, var, _ = self.p_mean_variance(model, x_t, tt)
        if t == 0:
            return mean
        return mean + var.sqrt() * torch.randn(x_t.shape, generator=generator, device=x_t.device)

    def _check_t_start(self, t_start: int) -> int:
        if not 0 <= int(t_start) < self.n_diffusion_steps:
            raise ValueError(f"t_start must be a diffusion step in [0, {self.n_diffusion_steps - 1}], got {t_start}")
        return int(t_start)

    def _initial_sample(self, shape: tuple, generator, x_T, t_start, cond) -> torch.Tensor:
        """The reverse process's first sample, conditioned: ``N(0, I)`` noise, or ``x_T`` (which a warm
        start at ``t_start`` requires)."""
        if t_start is not None:
            self._check_t_start(t_start)
            if x_T is None:
                raise ValueError("a warm start (t_start) needs x_T, the sample at step t_start")
        return cond(torch.randn(shape, generator=generator, device=self.device) if x_T is None else x_T)

    @torch.no_grad()
    def p_sample_loop(self, model: Denoiser, shape: tuple, generator: torch.Generator | None = None,
                      x_T: torch.Tensor | None = None, return_trajectory: bool = False,
                      condition: Callable[[torch.Tensor], torch.Tensor] | None = None, t_start: int | None = None):
        """DDPM sampling (Ho et al., Algorithm 2): ``x_T ~ N(0, I)``, then T ancestral steps.

        ``condition``, if given, is applied to ``x_T`` and after every step (inpainting of known
        entries, as Diffuser does: ``x <- condition(x)``).
        ``t_start`` starts part-way: ``x_T`` is then a sample at step ``t_start`` (e.g. an old sample
        noised by ``q_sample``; a warm start) and only the steps ``t_start, ..., 0`` are run.
        Returns ``(B, ...)`` samples, or ``(n + 1, B, ...)`` from ``x_T`` to ``x_0`` with
        ``return_trajectory`` (``n`` steps run).
        """
        cond = condition if condition is not None else (lambda x: x)
        x = self._initial_sample(shape, generator, x_T, t_start, cond)
        traj = [x]
        for t in reversed(range(self.n_diffusion_steps if t_start is None else t_start + 1)):
            x = cond(self.p_sample(model, x, t, generator))
            if return_trajectory:
                traj.append(x)
        return torch.stack(traj) if return_trajectory else x

    def ddim_timesteps(self, n_steps: int, spacing: str = "uniform", t_start: int | None = None) -> list[int]:
        """``n_steps`` distinct steps from ``T - 1`` (or ``t_start``) downwards, in sampling order.

        ``"uniform"``: evenly spaced, ending at ``T - 1`` ("trailing"), e.g. T = 1000, 10 steps:
        999, 899, ..., 99. ``"quadratic"``: ``t_k = T (k / S)^2 - 1``, denser at low noise where the
        fine structure of the data is decided (the DDIM paper's "quadratic" selection), e.g.
        999, 809, 639, 489, 359, 249, 159, 89, 39, 9. With ``n_steps = T`` both visit every step.
        ``t_start`` (a warm start, see ``ddim_sample_loop``) puts the same pattern on ``0..t_start``.
        """
        T = self.n_diffusion_steps if t_start is None else self._check_t_start(t_start) + 1
        if not 1 <= n_steps <= T:
            raise ValueError(f"n_steps must be in [1, {T}], got {n_steps}")
        if spacing == "uniform":
            steps = [int(round(T * k / n_steps)) - 1 for k in range(1, n_steps + 1)]
        elif spacing == "quadratic":
            steps = [int(round(T * (k / n_steps) ** 2)) - 1 for k in range(1, n_steps + 1)]
        else:
            raise ValueError(f"unknown spacing {spacing!r}; choose 'uniform' or 'quadratic'")
        for k in range(len(steps)):  # keep them distinct: at least one step apart
            steps[k] = max(steps[k], steps[k - 1] + 1 if k else 0)
        return steps[::-1]

    @torch.no_grad()
    def ddim_sample_loop(self, model: Denoiser, shape: tuple, n_steps: int, eta: float = 0.0,
                         generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                         return_trajectory: bool = False, spacing: str = "uniform",
                         condition: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         t_start: int | None = None):
        """DDIM sampling (Song, Meng & Ermon 2021, eq. 12) on a subsequence of ``n_steps`` steps.

        With ``s`` the next (smaller) step, ``bar-alpha_{-1} = 1``::

            x_s = sqrt(bar-alpha_s) x0_hat + sqrt(1 - bar-alpha_s - sigma^2) eps_hat + sigma z,
            sigma = eta sqrt((1 - bar-alpha_s) / (1 - bar-alpha_t)) sqrt(1 - bar-alpha_t / bar-alpha_s).

        ``eta = 0`` is deterministic; ``eta = 1`` with every step is exactly DDPM. ``spacing``
        chooses the subsequence (:meth:`ddim_timesteps`). ``condition``, if given, is applied to
        ``x_T`` and after every step, as in ``p_sample_loop``. ``t_start`` starts part-way (a warm
        start): ``x_T`` is a sample at step ``t_start`` and the ``n_steps`` steps span ``t_start..0``.
        Returns ``(B, ...)``, or ``(n_steps + 1, B, ...)`` with ``return_trajectory``.
        """
        cond = condition if condition is not None else (lambda x: x)
        x = self._initial_sample(shape, generator, x_T, t_start, cond)
        steps = self.ddim_timesteps(n_steps, spacing, t_start)
        traj = [x]
        for i, t in enumerate(steps):
            s = steps[i + 1] if i + 1 < len(steps) else -1
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            eps, x0 = self.predict_eps_x0(model, x, tt)
            a_t = self.alphas_cumprod[t]
            a_s = self.alphas_cumprod[s] if s >= 0 else torch.ones((), device=x.device)
            sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
            x = a_s.sqrt() * x0 + (1 - a_s - sigma ** 2).clamp(min=0).sqrt() * eps
            if eta > 0 and s >= 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
            x = cond(x)
            if return_trajectory:
                traj.append(x)
        return torch.stack(traj) if return_trajectory else x


def respace(diffusion: GaussianDiffusion, n_steps: int) -> tuple[GaussianDiffusion, torch.Tensor]:
    """A shorter DDPM chain on ``n_steps`` of the ``T`` steps (Nichol & Dhariwal 2021, "respacing").

    Keeps ``bar-alpha`` at the steps ``S = ddim_timesteps(n_steps)`` and sets the new chain's
    ``beta_k = 1 - bar-alpha_{S_k} / bar-alpha_{S_{k-1}}``, so its marginals ``q(x_k | x_0)`` are
    the old ones at ``S_k``, and ancestral sampling on it is DDPM with bigger steps. The network
    was trained on the old step numbers: call it with ``steps[k]`` (``respaced_model``).
    Returns ``(diffusion on n_steps steps, steps: (n_steps,) long, ascending)``.
    """
    steps = torch.tensor(diffusion.ddim_timesteps(n_steps)[::-1], dtype=torch.long)
    ac = diffusion.alphas_cumprod.cpu().double()[steps]
    betas = 1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    new = GaussianDiffusion(betas, prediction=diffusion.prediction, clip_denoised=diffusion.clip_denoised)
    return new.to(diffusion.device), steps.to(diffusion.device)


def respaced_model(model: Callable, steps: torch.Tensor) -> Callable:
    """``(x, k) -> model(x, steps[k])``: a network of the full chain called on a respaced one."""
    return lambda x, k, *args: model(x, steps.to(k.device)[k], *args)
