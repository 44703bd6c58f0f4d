"""Offline RL in one step: a 2D continuous bandit learned from a multimodal behaviour data set.

The smallest setting where offline RL's central problem shows (after the 2D bandit of Wang,
Hunt & Zhou 2023, "Diffusion Policies as an Expressive Policy Class for Offline RL"):

- Behaviour actions come from a mixture of four Gaussians at ``(+-0.8, +-0.8)``, standard
  deviation 0.1. The two "ordinary" modes (top-left, bottom-right) hold 40 % of the data each;
  the best mode (top-right) and the worst (bottom-left) 10 % each.
- The true reward is ``r(a) = (a_x + a_y) / 2`` *on the support* of the data, and ``-1`` off it:
  actions the behaviour policy never tried fail. A data set records ``r + N(0, 0.05^2)``.
- The **support**: points within ``support_radius = 4 sigma = 0.4`` of a mixture mean, where the
  behaviour density is at least ``exp(-8)`` of a mode's peak. An action outside is
  **out of distribution (OOD)**; the OOD rate of a method is the share of its actions outside.

A Q network fit by regression on the data sees the linear trend and extrapolates it: its
maximiser runs off to the corner of the action box, where the true reward is -1. A CQL penalty
pushes Q down away from the data, safely, but in proportion to how *rare* actions are, so it
also pushes down the rare best mode. Sampling candidates from a diffusion model of the behaviour
actions and keeping the one with the highest Q stays on the support and finds the best mode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion.ddpm import GaussianDiffusion, make_beta_schedule
from ..nets.mlp import TimeMLP
from ..diffusion.toy_data import GaussianMixture
from ..core.stats import mean_ci95, wilson_ci95
from ..core.training import TrainConfig, train

__all__ = ["BanditConfig", "behaviour_mixture", "true_reward", "ood_mask", "behaviour_dataset", "QNetwork",
           "fit_q", "cql_penalty", "argmax_q", "train_behaviour_diffusion", "diffusion_select",
           "offline_bandit_experiment"]

MODE_MEANS = ((0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8))
MODE_WEIGHTS = (0.1, 0.4, 0.4, 0.1)
MODE_STD = 0.1
SUPPORT_RADIUS = 4 * MODE_STD
OFF_SUPPORT_REWARD = -1.0
ACTION_BOUND = 1.5


@dataclass(frozen=True)
class BanditConfig:
    """Sizes and training of every model of the bandit experiment (Chapter 2)."""

    n_data: int = 2000
    data_seed: int = 0
    reward_noise: float = 0.05
    q_hidden: int = 64
    q_steps: int = 2000
    cql_alpha: float = 1.0
    cql_n_samples: int = 256
    hidden: int = 128
    depth: int = 3
    n_diffusion_steps: int = 50
    diffusion_steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    n_decisions: int = 500
    n_candidates: int = 32
    n_starts: int = 16
    ascent_steps: int = 200
    ascent_lr: float = 0.05
    seed: int = 0


def behaviour_mixture() -> GaussianMixture:
    """The behaviour policy: ``sum_k w_k N(mu_k, 0.1^2 I)`` with the means and weights above."""
    return GaussianMixture(MODE_MEANS, [MODE_STD] * 4, MODE_WEIGHTS)


def _check_actions(a: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(a, dtype=torch.float32)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"actions must have shape (N, 2), got {tuple(a.shape)}")
    return a


def ood_mask(a: torch.Tensor) -> torch.Tensor:
    """Whether each action is off the data's support: ``min_k ||a - mu_k|| >= 4 sigma``.

    Shapes: a ``(N, 2)``  ->  ``(N,)`` bool.
    """
    a = _check_actions(a)
    dist = torch.cdist(a, torch.tensor(MODE_MEANS)).min(dim=1).values
    return dist >= SUPPORT_RADIUS


def true_reward(a: torch.Tensor) -> torch.Tensor:
    """``r(a) = (a_x + a_y) / 2`` on the support, ``-1`` off it. Shapes: ``(N, 2) -> (N,)``."""
    a = _check_actions(a)
    return torch.where(ood_mask(a), torch.full((len(a),), OFF_SUPPORT_REWARD), a.mean(dim=1))


def behaviour_dataset(n: int = 2000, seed: int = 0, reward_noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` logged pairs ``(a_i, r_i)``: ``a_i`` from the behaviour mixture, ``r_i = r(a_i) + noise``.

    Returns ``actions (n, 2)`` and ``rewards (n,)``; the same ``seed`` gives the same data.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    actions = behaviour_mixture().sample(n, g)
    rewards = true_reward(actions) + reward_noise * torch.randn(n, generator=g)
    return actions, rewards


class QNetwork(nn.Module):
    """``Q(a)``: an MLP from an action to its predicted reward. Shapes: ``(N, 2) -> (N,)``."""

    def __init__(self, hidden: int = 64, depth: int = 2):
        super().__init__()
        layers, width = [], 2
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a).squeeze(-1)


def cql_penalty(q: QNetwork, data_actions: torch.Tensor, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """The CQL(H) regulariser ``log E_{a ~ U(box)} exp Q(a) - E_{a ~ data} Q(a)`` (Kumar et al. 2020, eq. 4).

    The log-mean-exp over ``n_samples`` uniform actions in the box ``[-1.5, 1.5]^2`` estimates
    the first term (up to the constant log-volume). Minimising it lowers Q on actions away
    from the data and raises it on the data.
    """
    uniform = (torch.rand(n_samples, 2, generator=generator, device=data_actions.device) * 2 - 1) * ACTION_BOUND
    return torch.logsumexp(q(uniform), 0) - math.log(n_samples) - q(data_actions).mean()


def fit_q(actions: torch.Tensor, rewards: torch.Tensor, cfg: BanditConfig = BanditConfig(), alpha: float = 0.0,
          progress: bool = False) -> QNetwork:
    """Fit ``Q`` by regression ``E (Q(a) - r)^2 / 2``, plus ``alpha`` times :func:`cql_penalty` when ``alpha > 0``."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (0: plain regression, > 0: CQL), got {alpha}")
    data = torch.cat([_check_actions(actions), rewards.reshape(-1, 1)], dim=1)
    torch.manual_seed(cfg.seed)
    q = QNetwork(cfg.q_hidden)

    def loss(model, batch, generator):
        a, r = batch[:, :2], batch[:, 2]
        mse = 0.5 * ((model(a) - r) ** 2).mean()
        return mse + alpha * cql_penalty(model, a, cfg.cql_n_samples, generator) if alpha > 0 else mse

    return _train(q, loss, data, cfg.q_steps, cfg, "bandit-cql" if alpha > 0 else "bandit-q", progress).eval()


def _train(model, loss, data, n_steps, cfg: BanditConfig, name: str, progress: bool) -> nn.Module:
    def sample_batch(batch_size, generator):
        return data[torch.randint(0, len(data), (batch_size,), generator=generator)]

    tc = TrainConfig(n_steps=n_steps, batch_size=cfg.batch_size, lr=cfg.lr, ema_decay=0.99, seed=cfg.seed,
                     lr_schedule="cosine", checkpoint_every=n_steps)
    result = train(model, loss, sample_batch, tc, name=name, recipe_config=cfg, device="cpu", progress=progress)
    return result.ema_model


def argmax_q(q: QNetwork, starts: torch.Tensor, n_steps: int = 200, lr: float = 0.05) -> torch.Tensor:
    """The greedy action ``argmax_a Q(a)`` of each decision, by gradient ascent from several starts.

    From every start ``a <- clip(a + Adam(grad_a Q(a)))`` in the box ``[-1.5, 1.5]^2``; each
    decision then keeps its end point with the highest Q (multi-start, against local maxima).
    Shapes: starts ``(D, K, 2)`` (K starts for each of D decisions)  ->  ``(D, 2)``.
    """
    if starts.ndim != 3 or starts.shape[2] != 2:
        raise ValueError(f"starts must have shape (D, K, 2), got {tuple(starts.shape)}")
    d, k, _ = starts.shape
    a = starts.reshape(-1, 2).clone().requires_grad_(True)
    opt = torch.optim.Adam([a], lr=lr)
    q.requires_grad_(False)
    for _ in range(n_steps):
        opt.zero_grad()
        (-q(a).sum()).backward()
        opt.step()
        with torch.no_grad():
            a.clamp_(-ACTION_BOUND, ACTION_BOUND)
    q.requires_grad_(True)
    a = a.detach().view(d, k, 2)
    with torch.no_grad():
        best = q(a.flatten(0, 1)).view(d, k).argmax(dim=1)
    return a[torch.arange(d), best]


def _behaviour_diffusion(cfg: BanditConfig) -> GaussianDiffusion:
    """Cosine schedule, epsilon prediction, clean-sample estimates clipped to the action box.

    Without the clip, the first steps of the cosine schedule (``bar-alpha`` near 0) divide a small
    error in the predicted noise by ``sqrt(bar-alpha)``, and about 2% of samples end far outside the box.
    """
    return GaussianDiffusion(make_beta_schedule("cosine", cfg.n_diffusion_steps), prediction="epsilon",
                             clip_denoised=ACTION_BOUND)


def train_behaviour_diffusion(actions: torch.Tensor, cfg: BanditConfig = BanditConfig(),
                              progress: bool = False) -> tuple[TimeMLP, GaussianDiffusion]:
    """A DDPM of the behaviour actions ``p_theta(a) ~ beta(a)``; returns the EMA denoiser and its diffusion."""
    diffusion = _behaviour_diffusion(cfg)
    torch.manual_seed(cfg.seed)
    net = TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)
    loss = lambda model, x0, g: diffusion.training_loss(model, x0, g)  # noqa: E731
    model = _train(net, loss, _check_actions(actions), cfg.diffusion_steps, cfg, "bandit-diffusion", progress)
    return model.eval(), diffusion


@torch.no_grad()
def diffusion_select(q: QNetwork, model: TimeMLP, diffusion: GaussianDiffusion, n_decisions: int,
                     n_candidates: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each decision draw ``n_candidates`` actions ``a_j ~ p_theta`` and keep ``argmax_j Q(a_j)``.

    The selection only ever ranks actions the behaviour model proposes, so it stays on the
    data's support however Q extrapolates (the selection step of IDQL / SfBC).
    Returns ``(n_decisions, 2)``.
    """
    cand = diffusion.p_sample_loop(model, (n_decisions * n_candidates, 2), generator=generator)
    cand = cand.view(n_decisions, n_candidates, 2)
    best = q(cand.flatten(0, 1)).view(n_decisions, n_candidates).argmax(dim=1)
    return cand[torch.arange(n_decisions), best]


def _score(actions: torch.Tensor) -> tuple[float, float]:
    return true_reward(actions).mean().item(), ood_mask(actions).float().mean().item()


def offline_bandit_experiment(cfg: BanditConfig = BanditConfig(), alphas=(0.1, 1.0, 10.0),
                              progress: bool = False) -> dict:
    """Every method on the same logged data; returns their mean TRUE reward and OOD rate.

    ``behavior``: the data's own actions. ``naive``: for each of ``n_decisions`` decisions,
    :func:`argmax_q` of a regression Q from ``n_starts`` random data actions. ``conservative``:
    the same on a CQL Q (``cfg.cql_alpha``; ``conservative_by_alpha`` repeats it for each of
    ``alphas``: small alphas find the best mode, large ones prefer the frequent modes). ``diffusion``: best-of-
    ``n_candidates`` diffusion samples ranked by the regression Q. ``best_in_support`` is the
    largest true reward on the support, ``0.8 + 0.4 / sqrt(2)``.
    """
    actions, rewards = behaviour_dataset(cfg.n_data, cfg.data_seed, cfg.reward_noise)
    g = torch.Generator().manual_seed(cfg.seed)
    starts = actions[torch.randint(0, len(actions), (cfg.n_decisions, cfg.n_starts), generator=g)]
    out: dict = {"best_in_support_return": 0.8 + SUPPORT_RADIUS / math.sqrt(2)}
    out["behavior_return"], out["behavior_ood_rate"] = _score(actions)

    t0 = time.perf_counter()
    q = fit_q(actions, rewards, cfg, progress=progress)
    naive = argmax_q(q, starts, cfg.ascent_steps, cfg.ascent_lr)
    out["naive_return"], out["naive_ood_rate"] = _score(naive)
    out["q_train_seconds"] = time.perf_counter() - t0

    by_alpha, picked = {}, {}
    for alpha in sorted(set(alphas) | {cfg.cql_alpha}):
        q_cql = fit_q(actions, rewards, cfg, alpha=alpha, progress=progress)
        picked[alpha] = argmax_q(q_cql, starts, cfg.ascent_steps, cfg.ascent_lr)
        ret, ood = _score(picked[alpha])
        by_alpha[alpha] = {"return": ret, "ood_rate": ood, "ci95": _score_ci95(picked[alpha])}
    out["conservative_alpha"] = cfg.cql_alpha
    out["conservative_return"] = by_alpha[cfg.cql_alpha]["return"]
    out["conservative_ood_rate"] = by_alpha[cfg.cql_alpha]["ood_rate"]
    out["conservative_by_alpha"] = by_alpha

    t0 = time.perf_counter()
    model, diffusion = train_behaviour_diffusion(actions, cfg, progress)
    out["diffusion_train_seconds"] = time.perf_counter() - t0
    chosen = diffusion_select(q, model, diffusion, cfg.n_decisions, cfg.n_candidates, generator=g)
    out["diffusion_return"], out["diffusion_ood_rate"] = _score(chosen)
    samples = diffusion.p_sample_loop(model, (cfg.n_decisions, 2), generator=g)
    out["diffusion_sample_ood_rate"] = ood_mask(samples).float().mean().item()
    out["n_decisions"] = int(cfg.n_decisions)
    out["ci95"] = {"behavior": _score_ci95(actions), "naive": _score_ci95(naive),
                   "conservative": _score_ci95(picked[cfg.cql_alpha]), "diffusion": _score_ci95(chosen)}
    return out


def _score_ci95(actions: torch.Tensor) -> dict:
    """95 % intervals of ``_score``: the half-width of the mean true reward's t interval, and the
    Wilson interval of the OOD rate, over the ``(N, 2)`` actions."""
    _, half = mean_ci95(true_reward(actions).cpu().numpy())
    ood = ood_mask(actions)
    return {"return": half, "ood_rate": list(wilson_ci95(int(ood.sum().item()), len(ood)))}
