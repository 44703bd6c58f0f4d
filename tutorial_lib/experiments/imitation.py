"""Imitation from multimodal demonstrations: behaviour cloning against a diffusion policy.

Both policies map a state ``s`` to a chunk of the next ``action_horizon`` displacements
(Chi et al. 2023, "Diffusion Policy"); actions are divided by the task's ``max_step`` so that
they lie in about ``[-1, 1]``.

- Behaviour cloning (BC): an MLP ``pi(s)`` trained with ``E || pi(s) - a ||^2``. Its optimum is
  the conditional *mean* ``E[a | s]``: where half the experts go left and half go right, the
  mean goes straight on, into the obstacle.
- Diffusion policy: a conditional DDPM ``p(a | s)`` trained with the simple loss
  ``E || eps - eps_theta(sqrt(bar-alpha_t) a + sqrt(1 - bar-alpha_t) eps, t, s) ||^2`` and
  sampled with a few DDIM steps. It *samples* one of the ways instead of averaging them.

Data for both is a flat tensor ``(N, 2 + 2 H)``: the state, then the flattened action chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion.ddpm import GaussianDiffusion, make_beta_schedule
from ..envs.obstacle2d import (ObstacleTask, demonstration_chunks, expert_demonstrations, passing_side, rollout,
                              sample_start_states)
from ..nets.conditional_mlp import ConditionalTimeMLP
from ..core.stats import wilson_ci95
from ..core.training import TrainResult

__all__ = ["ImitationConfig", "BCPolicy", "DiffusionPolicy", "imitation_data", "bc_loss",
           "diffusion_from_imitation_config", "diffusion_policy_loss", "build_bc", "build_diffusion_net",
           "train_bc", "train_diffusion_policy", "multimodal_experiment", "data_efficiency_experiment"]

STATE_DIM, ACTION_DIM = 2, 2


@dataclass(frozen=True)
class ImitationConfig:
    """Data, networks and training of the two policies of the obstacle task (Chapter 2).

    ``action_horizon`` actions are predicted, the first ``n_action_steps`` executed. Executing
    the whole chunk keeps the diffusion policy on one side: replanning more often lets it
    switch sides half-way and hit the obstacle (see ``diffusion_success_by_action_steps``).
    """

    n_demos: int = 50
    demo_seed: int = 0
    action_horizon: int = 8
    n_action_steps: int = 8
    hidden: int = 128
    depth: int = 3
    n_diffusion_steps: int = 50
    ddim_steps: int = 10
    n_steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.995
    seed: int = 0


def imitation_data(cfg: ImitationConfig, task: ObstacleTask = ObstacleTask()) -> torch.Tensor:
    """The demonstrations as training pairs: ``(N, 2 + 2 H)`` = state, then actions / ``max_step``."""
    demos = expert_demonstrations(cfg.n_demos, seed=cfg.demo_seed, task=task)
    obs, chunks = demonstration_chunks(demos, cfg.action_horizon)
    return torch.cat([obs, chunks.flatten(1) / task.max_step], dim=1)


def _split(batch: torch.Tensor, action_horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.ndim != 2 or batch.shape[1] != STATE_DIM + ACTION_DIM * action_horizon:
        raise ValueError(f"a batch must have shape (B, {STATE_DIM + ACTION_DIM * action_horizon}) "
                         f"(state, then {action_horizon} actions), got {tuple(batch.shape)}")
    return batch[:, :STATE_DIM], batch[:, STATE_DIM:]


class BCPolicy(nn.Module):
    """Behaviour cloning: an MLP from a state to an action chunk, ``pi(s) ~ E[a_{k:k+H} | s_k]``.

    Shapes: ``s (B, 2)  ->  (B, H, 2)`` displacements in the task's units (already multiplied
    by ``max_step``).
    """

    def __init__(self, action_horizon: int = 8, hidden: int = 128, depth: int = 3, max_step: float = 0.1):
        super().__init__()
        self.action_horizon, self.max_step = action_horizon, max_step
        layers, width = [], STATE_DIM
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, ACTION_DIM * action_horizon))

    def normalized(self, s: torch.Tensor) -> torch.Tensor:
        """The flat normalised chunk ``(B, 2 H)`` (actions / ``max_step``): what the loss compares."""
        if s.ndim != 2 or s.shape[1] != STATE_DIM:
            raise ValueError(f"states must have shape (B, {STATE_DIM}), got {tuple(s.shape)}")
        return self.net(s)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.normalized(s).view(-1, self.action_horizon, ACTION_DIM) * self.max_step


def bc_loss(action_horizon: int):
    """The BC loss ``E || pi(s) - a ||^2`` on flat batches ``(B, 2 + 2 H)``, for :func:`train`."""
    def loss(model: BCPolicy, batch: torch.Tensor, generator=None) -> torch.Tensor:
        s, a = _split(batch, action_horizon)
        return ((model.normalized(s) - a) ** 2).mean()
    return loss



def bc_recipe_loss(cfg: ImitationConfig, device=None):
    """The loss of the ``motivation-bc`` recipe."""
    return bc_loss(cfg.action_horizon)


def diffusion_from_imitation_config(cfg: ImitationConfig) -> GaussianDiffusion:
    """The cosine-schedule epsilon-prediction diffusion of the policy; samples clipped to ``[-1, 1]``."""
    return GaussianDiffusion(make_beta_schedule("cosine", cfg.n_diffusion_steps), prediction="epsilon",
                             clip_denoised=1.0)


def diffusion_policy_loss(cfg: ImitationConfig, device=None):
    """The conditional DDPM loss ``E || eps - eps_theta(a_t, t, s) ||^2`` on flat batches, for :func:`train`."""
    diffusion = diffusion_from_imitation_config(cfg).to(device or "cpu")

    def loss(model: ConditionalTimeMLP, batch: torch.Tensor, generator=None) -> torch.Tensor:
        s, a = _split(batch, cfg.action_horizon)
        return diffusion.training_loss(model.bind(s), a, generator)
    return loss


class DiffusionPolicy:
    """Sample an action chunk ``a ~ p_theta(a | s)`` with ``ddim_steps`` DDIM steps (eta = 0).

    Each call draws fresh noise ``a_T ~ N(0, I)`` from ``generator``, so the same state can give
    different chunks: one per way of passing the obstacle.
    Shapes: ``s (B, 2)  ->  (B, H, 2)`` displacements in the task's units.
    """

    def __init__(self, net: ConditionalTimeMLP, cfg: ImitationConfig, max_step: float = 0.1,
                 generator: torch.Generator | None = None):
        self.net, self.cfg, self.max_step = net.eval(), cfg, max_step
        self.device = next(net.parameters()).device
        self.diffusion = diffusion_from_imitation_config(cfg).to(self.device)
        self.generator = generator if generator is not None else torch.Generator(self.device).manual_seed(0)

    @torch.no_grad()
    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        if s.ndim != 2 or s.shape[1] != STATE_DIM:
            raise ValueError(f"states must have shape (B, {STATE_DIM}), got {tuple(s.shape)}")
        s = s.to(self.device)
        a = self.diffusion.ddim_sample_loop(self.net.bind(s), (s.shape[0], self.net.dim), self.cfg.ddim_steps,
                                            generator=self.generator, spacing="uniform")
        return a.view(-1, self.cfg.action_horizon, ACTION_DIM).cpu() * self.max_step


def build_bc(cfg: ImitationConfig) -> BCPolicy:
    """The BC network of ``cfg``."""
    return BCPolicy(cfg.action_horizon, cfg.hidden, cfg.depth)


def build_diffusion_net(cfg: ImitationConfig) -> ConditionalTimeMLP:
    """The denoiser ``eps_theta(a_t, t, s)`` of ``cfg``: chunks of ``2 H`` numbers given a 2D state."""
    return ConditionalTimeMLP(dim=ACTION_DIM * cfg.action_horizon, cond_dim=STATE_DIM, hidden=cfg.hidden,
                              depth=cfg.depth)


def train_bc(cfg: ImitationConfig = ImitationConfig(), device="cpu", progress: bool = False) -> TrainResult:
    """Train :class:`BCPolicy` on the demonstrations of ``cfg`` (the ``motivation-bc`` recipe)."""
    from ..core.recipes import train_recipe
    return train_recipe("motivation-bc", cfg, device=device, progress=progress)


def train_diffusion_policy(cfg: ImitationConfig = ImitationConfig(), device="cpu",
                           progress: bool = False) -> TrainResult:
    """Train the denoiser of :class:`DiffusionPolicy` (the ``motivation-diffusion-policy`` recipe)."""
    from ..core.recipes import train_recipe
    return train_recipe("motivation-diffusion-policy", cfg, device=device, progress=progress)


def multimodal_experiment(cfg: ImitationConfig = ImitationConfig(), n_eval: int = 100, eval_seed: int = 1,
                          device="cpu", progress: bool = False) -> dict:
    """Train BC and a diffusion policy on ``cfg.n_demos`` demonstrations; roll both out from fixed starts.

    The ``n_eval`` start states are drawn with ``eval_seed`` (the demonstrations use
    ``cfg.demo_seed``). Returns success and collision rates, the share of successful diffusion
    rollouts passing on the left (both ways kept: about 0.5), the diffusion policy's success
    when it replans after 1, H / 2 and H actions, training seconds, and the
    rollouts themselves (``bc_rollout``, ``diffusion_rollout``) for plotting.
    """
    task = ObstacleTask()
    starts = sample_start_states(n_eval, seed=eval_seed, task=task)
    bc = train_bc(cfg, device, progress)
    dp = train_diffusion_policy(cfg, device, progress)
    policy = DiffusionPolicy(dp.ema_model, cfg, task.max_step,
                             generator=torch.Generator(device).manual_seed(eval_seed))
    bc_model = bc.ema_model.cpu()
    bc_out = rollout(lambda s: bc_model(s), starts, task, cfg.n_action_steps)
    dp_out = rollout(policy, starts, task, cfg.n_action_steps)
    by_steps = {}
    for n_action_steps in sorted({1, cfg.action_horizon // 2, cfg.action_horizon}):
        policy.generator.manual_seed(eval_seed)
        by_steps[n_action_steps] = rollout(policy, starts, task, n_action_steps)["success"].float().mean().item()
    sides = passing_side(dp_out["paths"], task)[dp_out["success"]]
    demo_sides = expert_demonstrations(cfg.n_demos, seed=cfg.demo_seed, task=task)["side"]
    return {
        "n_demos": cfg.n_demos, "n_eval": n_eval,
        "demo_left_share": (demo_sides < 0).float().mean().item(),
        "bc_success": bc_out["success"].float().mean().item(),
        "bc_collision": bc_out["collided"].float().mean().item(),
        "diffusion_success": dp_out["success"].float().mean().item(),
        "diffusion_collision": dp_out["collided"].float().mean().item(),
        "diffusion_success_by_action_steps": by_steps,
        "ci95": {"bc_success": list(wilson_ci95(int(bc_out["success"].sum().item()), n_eval)),
                 "diffusion_success": list(wilson_ci95(int(dp_out["success"].sum().item()), n_eval))},
        "diffusion_left_share": (sides < 0).float().mean().item() if len(sides) else float("nan"),
        "bc_train_seconds": bc.history["wall_time"][-1],
        "diffusion_train_seconds": dp.history["wall_time"][-1],
        "bc_rollout": bc_out, "diffusion_rollout": dp_out,
    }


def data_efficiency_experiment(n_demos=(10, 25, 50, 100, 200), seeds=(0, 1, 2), n_eval: int = 100,
                               eval_seed: int = 1, cfg: ImitationConfig = ImitationConfig(), log=None) -> dict:
    """Success against the number of demonstrations, BC and the diffusion policy (Chi et al. 2023 report about
    50-200 demonstrations per task; how few does the obstacle task need?).

    For each ``n`` in ``n_demos`` and each seed ``s``: ``n`` demonstrations drawn with ``demo_seed = s``, both
    policies trained with ``seed = s`` and the recipe's other settings, then rolled out from the same ``n_eval``
    starts (``eval_seed``). Returns ``n_demos`` (list), ``bc_success`` and ``diffusion_success`` (the mean over
    seeds, lists beside it), the per-seed rates, and Wilson 95 % intervals over the pooled episodes.
    """
    import dataclasses

    task = ObstacleTask()
    starts = sample_start_states(n_eval, seed=eval_seed, task=task)
    out = {"n_demos": list(n_demos), "seeds": list(seeds), "n_eval": n_eval,
           "bc_success": [], "diffusion_success": [], "bc_by_seed": [], "diffusion_by_seed": [],
           "ci95": {"bc_success": [], "diffusion_success": []}}
    for n in n_demos:
        rates = {"bc": [], "diffusion": []}
        for s in seeds:
            c = dataclasses.replace(cfg, n_demos=n, demo_seed=s, seed=s)
            bc = train_bc(c).ema_model.cpu()
            dp = DiffusionPolicy(train_diffusion_policy(c).ema_model, c, task.max_step,
                                 generator=torch.Generator().manual_seed(eval_seed))
            rates["bc"].append(rollout(lambda x: bc(x), starts, task, c.n_action_steps)["success"].float().mean().item())
            rates["diffusion"].append(rollout(dp, starts, task, c.n_action_steps)["success"].float().mean().item())
            if log is not None:
                log(f"  {n} demonstrations, seed {s}: BC {rates['bc'][-1]:.2f}, diffusion {rates['diffusion'][-1]:.2f}")
        for key in ("bc", "diffusion"):
            out[f"{key}_success"].append(sum(rates[key]) / len(seeds))
            out[f"{key}_by_seed"].append(rates[key])
            hits = int(round(sum(rates[key]) * n_eval))
            out["ci95"][f"{key}_success"].append(list(wilson_ci95(hits, n_eval * len(seeds))))
    return out
