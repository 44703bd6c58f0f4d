"""Diffusing states only, acting by inverse dynamics: Decision Diffuser's recipe (Ajay et al. 2023).

Decision Diffuser models trajectories of *states* ``x = (s_t, s_{t+k}, ..., s_{t+(H-1)k}): (B, H, 4)``
(no actions: they are often jerky and hard to model, the paper argues) and conditions them by
classifier-free guidance (Ho & Salimans 2022) rather than inpainting or a value gradient:

    x_0-estimate = f(x_t, t, null) + w (f(x_t, t, g) - f(x_t, t, null)),

one network ``f`` trained on ``(x, g)`` pairs whose condition is replaced by the null token with
probability ``p_uncond`` (``guidance.drop_condition``). The paper conditions on returns, constraints
or skills; in the maze the condition is the goal the expert was heading for (``goal_windows``). The
current state is inpainted at ``x[:, 0]``, as Decision Diffuser does with its history.

To act, the controller replans at every step (``replan_every = 1``), takes the plan's next state
``s_{t+k}`` and applies the inverse dynamics ``a_t = f_phi(s_t, s_{t+k})`` (``inverse_dynamics``).

The network is the FiLM U-Net of Diffusion Policy (``ConditionalUnet1D``), as in the Diffuser
chapter's classifier-free model of state-action windows (``experiments.maze_conditioning``,
recipe ``maze-umaze-cfg``), here over the 4 state channels; the process is Diffuser's (cosine
schedule, ``x_0`` prediction, ``diffuser.make_diffusion``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.utils import get_device
from ..diffusion.ddpm import GaussianDiffusion
from ..diffusion.guidance import cfg_denoiser
from ..nets.conditional_unet import ConditionalUnet1D
from .diffuser import apply_conditioning, cfg_inpainting_loss, make_diffusion
from .goal_windows import GoalSegments, goal_segments
from .inverse_dynamics import InverseDynamics
from .trajectories import OBSERVATION_DIM, LimitsNormalizer

__all__ = ["StateDiffuserConfig", "build_state_net", "state_data", "state_batches", "state_cfg_loss", "state_recipe_loss",
           "state_extra", "StatePlanner", "load_state_planner"]


@dataclass(frozen=True)
class StateDiffuserConfig:
    """A goal-conditioned diffusion model of state windows (Decision Diffuser), on a maze's expert stream.

    ``horizon`` points ``stride`` environment steps apart, as the layout's Diffuser (U-Maze: 32 x 4);
    network and process as ``maze_conditioning.MazeCFGConfig``; ``weight`` and ``ddim_steps`` are the
    planner's defaults (``w = 2`` had the smallest plan-end error of the state-action CFG model on
    U-Maze, ``data/bench/conditioning.json``). 22k steps: about 84 ms each on one CPU thread (31 min).
    """

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    horizon: int = 32
    stride: int = 4
    n_diffusion_steps: int = 64
    schedule: str = "cosine"
    widths: tuple = (16, 64, 128)
    time_dim: int = 32
    p_uncond: float = 0.2
    weight: float = 2.0
    ddim_steps: int = 16
    n_steps: int = 22_000
    batch_size: int = 32
    lr: float = 2e-4
    ema_decay: float = 0.995
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if not 0.0 < self.p_uncond < 1.0:
            raise ValueError(f"StateDiffuserConfig.p_uncond must be in (0, 1) so that the network learns both "
                             f"models, got {self.p_uncond}")
        multiple = 2 ** (len(self.widths) - 1)
        if self.horizon % multiple or self.horizon < 2:
            raise ValueError(f"StateDiffuserConfig.horizon = {self.horizon} must be a multiple of {multiple} "
                             f"for widths {self.widths}")
        if not 1 <= self.ddim_steps <= self.n_diffusion_steps:
            raise ValueError(f"ddim_steps must be in [1, n_diffusion_steps = {self.n_diffusion_steps}], "
                             f"got {self.ddim_steps}")


def build_state_net(cfg: StateDiffuserConfig) -> ConditionalUnet1D:
    """``f(x_t, t, [g, keep])``: state windows ``(B, H, 4)``, condition the goal (2) and the keep flag."""
    return ConditionalUnet1D(OBSERVATION_DIM, cond_dim=3, widths=cfg.widths, time_dim=cfg.time_dim)


def state_batches(cfg: StateDiffuserConfig, data: GoalSegments, device):
    """``sample_batch(B, generator) -> (x0 (B, H, 4), goal (B, 2))``, normalised, on ``device``."""
    data.to(device)

    def sample_batch(batch_size, generator):
        t = data.draw_steps(batch_size, generator)
        return data.state_windows(t, cfg.horizon, cfg.stride), data.goals[t]
    return sample_batch


def state_cfg_loss(model, diffusion: GaussianDiffusion, x0: torch.Tensor, goal: torch.Tensor, p_uncond: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``E || x_0 - c(f(c(x_t), t, drop(g))) ||^2`` with ``c`` inpainting the first state.

    As ``maze_conditioning.cfg_loss`` for state-action windows: ``x0: (B, H, 4)`` normalised state
    windows, ``goal: (B, 2)`` normalised, replaced by the null token with probability ``p_uncond``.
    """
    if x0.ndim != 3 or x0.shape[-1] != OBSERVATION_DIM or goal.shape != (x0.shape[0], 2):
        raise ValueError(f"need x0 (B, H, {OBSERVATION_DIM}) and goal (B, 2), got {tuple(x0.shape)} and "
                         f"{tuple(goal.shape)}")
    return cfg_inpainting_loss(model, diffusion, x0, {0: x0[:, 0]}, goal, p_uncond, generator, action_dim=0)


def state_recipe_loss(cfg: StateDiffuserConfig, device):
    """``loss(model, (x0, goal), generator)``: ``state_cfg_loss`` with the recipe's process and ``p_uncond``."""
    diffusion = make_diffusion(cfg.n_diffusion_steps, cfg.schedule).to(device)
    return lambda model, batch, generator: state_cfg_loss(model, diffusion, *batch, cfg.p_uncond, generator)


def state_extra(cfg, data: GoalSegments) -> dict:
    """What the checkpoint keeps beside the weights: the observation normaliser."""
    return {"normalizer": data.obs_normalizer.state_dict()}


def state_data(cfg: StateDiffuserConfig) -> GoalSegments:
    """The layout's expert stream cut into goal segments (``goal_windows.goal_segments``)."""
    return goal_segments(cfg)


class StatePlanner:
    """A policy ``action = planner(obs (4,), goal (2,))``: plan states by CFG, act by inverse dynamics.

    Every ``replan_every`` steps it samples a plan ``(H, 4)`` from the current state (inpainted) with
    goal guidance ``weight`` and ``ddim_steps`` DDIM steps; ``k`` steps after planning it aims at the
    plan's state ``k + stride`` steps ahead (interpolated between plan points) and applies
    ``a = inverse_dynamics(obs, target)``. Works with ``maze_expert.evaluate_policy``.
    """

    def __init__(self, model: ConditionalUnet1D, diffusion: GaussianDiffusion, normalizer: LimitsNormalizer,
                 inverse_dynamics: InverseDynamics, horizon: int, stride: int, weight: float = 2.0,
                 ddim_steps: int | None = 16, replan_every: int = 1, seed: int = 0, device=None,
                 id_stride: int | None = None):
        if id_stride is not None and id_stride != stride:
            raise ValueError(f"the inverse dynamics was trained on states {id_stride} steps apart but the plans "
                             f"are {stride} steps apart; train it with stride={stride}")
        if replan_every < 1:
            raise ValueError(f"replan_every must be >= 1 environment step, got {replan_every}")
        self.device = get_device(device)
        self.model = model.to(self.device).eval()
        self.inverse_dynamics = inverse_dynamics.to(self.device).eval()
        self.diffusion = diffusion.to(self.device)
        self.normalizer, self.horizon, self.stride = normalizer, int(horizon), int(stride)
        self.weight, self.ddim_steps, self.replan_every = float(weight), ddim_steps, int(replan_every)
        self.seed = seed
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan; reseed the sampler (``seed`` or the constructor's)."""
        self.generator = torch.Generator(self.device).manual_seed(self.seed if seed is None else seed)
        self.plan_states, self.k = None, 0

    @torch.no_grad()
    def plan(self, state, goal) -> np.ndarray:
        """One plan from ``state (4,)`` towards ``goal (2,)``: ``(H, 4)`` states in raw units."""
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        goal = np.asarray(goal, dtype=np.float32).reshape(-1)
        if state.shape != (4,) or goal.shape != (2,) or not (np.isfinite(state).all() and np.isfinite(goal).all()):
            raise ValueError(f"need a finite state (x, y, vx, vy) and goal (x, y), got {state.tolist()} and {goal.tolist()}")
        s = self.normalizer.normalize(torch.from_numpy(state)).to(self.device)
        g = self.normalizer.sub(0, 2).normalize(torch.from_numpy(goal)).to(self.device)[None]
        net = cfg_denoiser(self.model, g, self.weight)
        shape = (1, self.horizon, OBSERVATION_DIM)

        def cond(x):
            return apply_conditioning(x, {0: s}, action_dim=0)
        if self.ddim_steps is None:
            x = self.diffusion.p_sample_loop(net, shape, self.generator, condition=cond)
        else:
            x = self.diffusion.ddim_sample_loop(net, shape, self.ddim_steps, generator=self.generator, condition=cond)
        return self.normalizer.unnormalize(x[0].cpu()).numpy()

    def target(self, k: int) -> np.ndarray:
        """The plan's state ``k + stride`` environment steps after it was made (interpolated), ``(4,)``."""
        tau = min((k + self.stride) / self.stride, self.horizon - 1.0)
        i = min(int(tau), self.horizon - 2)
        frac = tau - i
        return (1 - frac) * self.plan_states[i] + frac * self.plan_states[i + 1]

    @torch.no_grad()
    def __call__(self, obs, goal) -> np.ndarray:
        """``obs: (4,)``, ``goal: (2,)``  ->  ``action: (2,) float32`` in ``[-1, 1]``."""
        if self.plan_states is None or self.k >= self.replan_every:
            self.plan_states, self.k = self.plan(obs, goal), 0
        s = torch.as_tensor(np.asarray(obs, np.float32).reshape(1, 4), device=self.device)
        target = torch.as_tensor(self.target(self.k)[None], dtype=torch.float32, device=self.device)
        self.k += 1
        return self.inverse_dynamics(s, target)[0].cpu().numpy().astype(np.float32)


def load_state_planner(name: str = "maze-umaze-states", path=None,
                       inverse_name: str = "maze-umaze-inverse-dynamics", inverse_path=None, device=None,
                       **overrides) -> StatePlanner:
    """The trained states model and inverse dynamics as a ``StatePlanner`` (shipped checkpoints, or the
    files at ``path`` / ``inverse_path``); ``overrides`` (``weight``, ``ddim_steps``, ``replan_every``,
    ``seed``) replace the config's planner defaults."""
    from ..core.recipes import load_recipe_model
    from .inverse_dynamics import load_inverse_dynamics

    model, ckpt, cfg = load_recipe_model(name, path=path, device=device)
    inverse, inverse_cfg = load_inverse_dynamics(inverse_name, path=inverse_path, device=device)
    settings = {"weight": cfg.weight, "ddim_steps": cfg.ddim_steps, **overrides}
    return StatePlanner(model, make_diffusion(cfg.n_diffusion_steps, cfg.schedule),
                        LimitsNormalizer.from_state_dict(ckpt["extra"]["normalizer"]), inverse, cfg.horizon,
                        cfg.stride, id_stride=inverse_cfg.stride, device=device, **settings)
