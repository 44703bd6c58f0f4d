"""Diffusing actions only: a goal-conditioned Diffusion Policy in the maze (Chi et al. 2023).

Diffusion Policy models ``p(a_{t-To+1 .. t-To+H} | o_{t-To+1 .. t})``: a *chunk* of ``H`` actions given
the last ``To`` observations, and executes ``Ta`` of them before asking again (receding horizon;
``pusht_policy`` explains the timeline). In the maze the condition also holds the goal,

    cond = [o_{t-1}, o_t, g]   (To * 4 + 2 numbers, normalised),

with ``g`` the goal the expert was heading for (``goal_windows``), and the chunk is ``(H, 2)`` forces.
The pieces are the Push-T policy's: the FiLM 1D U-Net (``ConditionalUnet1D``), the squared-cosine
schedule with epsilon prediction (``pusht_policy.make_diffusion``), the loss
``E || eps - eps_theta(sqrt(abar_t) a_0 + sqrt(1 - abar_t) eps, t, cond) ||^2`` and DDIM sampling with
``ddim_steps`` of the ``n_diffusion_steps`` steps. There is no plan of states and no model of the
dynamics: the policy acts directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..core.utils import get_device
from ..nets.conditional_unet import ConditionalUnet1D
from .goal_windows import GoalSegments, goal_segments
from .pusht_policy import make_diffusion
from .trajectories import ACTION_DIM, OBSERVATION_DIM, LimitsNormalizer

__all__ = ["MazeActionPolicyConfig", "build_action_net", "action_data", "action_batches", "action_policy_loss",
           "action_extra", "MazeDiffusionPolicy", "load_action_policy"]


@dataclass(frozen=True)
class MazeActionPolicyConfig:
    """Diffusion Policy on a maze's expert stream: To 2, H 16, Ta 8 and DDPM 100 / DDIM 10, as the paper.

    ``widths`` ``(16, 32, 64)``: a smaller U-Net than Push-T's ``(32, 64, 128)``, to train on one CPU thread:
    20k steps of batch 128, about 83 ms each (28 min).
    """

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    widths: tuple = (16, 32, 64)
    time_dim: int = 32
    n_diffusion_steps: int = 100
    ddim_steps: int = 10
    n_steps: int = 20_000
    batch_size: int = 128
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            raise ValueError(f"n_obs_steps and n_action_steps must be >= 1, got {self.n_obs_steps}, {self.n_action_steps}")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(f"the executed actions chunk[{self.n_obs_steps - 1}:{self.n_obs_steps - 1 + self.n_action_steps}]"
                             f" must fit in horizon = {self.horizon}")
        multiple = 2 ** (len(self.widths) - 1)
        if self.horizon % multiple:
            raise ValueError(f"horizon = {self.horizon} must be a multiple of {multiple} for widths {self.widths}")
        if not 1 <= self.ddim_steps <= self.n_diffusion_steps:
            raise ValueError(f"ddim_steps must be in [1, n_diffusion_steps], got {self.ddim_steps}")

    @property
    def cond_dim(self) -> int:
        """``To * 4 + 2``: the observation history and the goal."""
        return self.n_obs_steps * OBSERVATION_DIM + 2


def build_action_net(cfg: MazeActionPolicyConfig) -> ConditionalUnet1D:
    """``eps_theta(a_t, t, cond)``: chunks ``(B, H, 2)`` given ``cond (B, To * 4 + 2)``."""
    return ConditionalUnet1D(ACTION_DIM, cfg.cond_dim, widths=cfg.widths, time_dim=cfg.time_dim)


def action_data(cfg: MazeActionPolicyConfig) -> GoalSegments:
    """The layout's expert stream cut into goal segments (``goal_windows.goal_segments``)."""
    return goal_segments(cfg)


def action_batches(cfg: MazeActionPolicyConfig, data: GoalSegments, device):
    """``sample_batch(B, generator) -> (cond (B, To * 4 + 2), chunk (B, H, 2))``, normalised, on ``device``."""
    data.to(device)

    def sample_batch(batch_size, generator):
        t = data.draw_steps(batch_size, generator)
        cond = torch.cat([data.obs_history(t, cfg.n_obs_steps).flatten(1), data.goals[t]], dim=1)
        return cond, data.action_chunks(t, cfg.n_obs_steps, cfg.horizon)
    return sample_batch


def action_policy_loss(cfg: MazeActionPolicyConfig, device=None):
    """``loss(model, (cond, chunk), generator)``: Diffusion Policy's epsilon loss (``pusht_policy``'s)."""
    diffusion = make_diffusion(cfg).to(device or "cpu")

    def loss(model: ConditionalUnet1D, batch, generator=None) -> torch.Tensor:
        cond, chunk = batch
        return diffusion.training_loss(model.bind(cond), chunk, generator)
    return loss


def action_extra(cfg, data: GoalSegments) -> dict:
    """What the checkpoint keeps beside the weights: the observation and action normalisers."""
    return {"obs_normalizer": data.obs_normalizer.state_dict(), "action_normalizer": data.action_normalizer.state_dict()}


class MazeDiffusionPolicy:
    """A policy ``action = policy(obs (4,), goal (2,))`` that samples chunks and executes ``Ta`` of each.

    Keeps the last ``To`` observations (the first repeated at the start of an episode) and a queue of
    actions; when the queue is empty it samples a chunk ``(H, 2)`` with DDIM and queues
    ``chunk[To - 1 : To - 1 + Ta]``. Works with ``maze_expert.evaluate_policy``.
    """

    def __init__(self, net: ConditionalUnet1D, cfg: MazeActionPolicyConfig, obs_normalizer: LimitsNormalizer,
                 action_normalizer: LimitsNormalizer, ddim_steps: int | None = None, n_action_steps: int | None = None,
                 seed: int = 0, device=None):
        self.device = get_device(device)
        self.net, self.cfg = net.to(self.device).eval(), cfg
        self.obs_normalizer, self.action_normalizer = obs_normalizer, action_normalizer
        self.diffusion = make_diffusion(cfg).to(self.device)
        self.ddim_steps = int(ddim_steps or cfg.ddim_steps)
        self.n_action_steps = int(n_action_steps or cfg.n_action_steps)
        if not 1 <= self.n_action_steps <= cfg.horizon - cfg.n_obs_steps + 1:
            raise ValueError(f"n_action_steps must be in [1, {cfg.horizon - cfg.n_obs_steps + 1}], got {self.n_action_steps}")
        self.seed = seed
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the history and the queued actions; reseed the sampler."""
        self.generator = torch.Generator(self.device).manual_seed(self.seed if seed is None else seed)
        self.history: deque = deque(maxlen=self.cfg.n_obs_steps)
        self.queue: deque = deque()

    @torch.no_grad()
    def predict_chunk(self, obs_history, goal) -> np.ndarray:
        """Observations ``(To, 4)`` and a goal ``(2,)`` in raw units -> a chunk of actions ``(H, 2)``."""
        o = torch.as_tensor(np.asarray(obs_history, dtype=np.float32))
        g = torch.as_tensor(np.asarray(goal, dtype=np.float32)).reshape(-1)
        if o.shape != (self.cfg.n_obs_steps, OBSERVATION_DIM) or g.shape != (2,):
            raise ValueError(f"need the last {self.cfg.n_obs_steps} observations ({self.cfg.n_obs_steps}, 4) and a goal "
                             f"(2,), got {tuple(o.shape)} and {tuple(g.shape)}")
        if not (torch.isfinite(o).all() and torch.isfinite(g).all()):
            raise ValueError("obs_history and goal must be finite")
        cond = torch.cat([self.obs_normalizer.normalize(o).flatten(), self.obs_normalizer.sub(0, 2).normalize(g)])
        shape = (1, self.cfg.horizon, ACTION_DIM)
        a = self.diffusion.ddim_sample_loop(self.net.bind(cond[None].to(self.device)), shape, self.ddim_steps,
                                            generator=self.generator)
        return self.action_normalizer.unnormalize(a[0].cpu()).numpy()

    def __call__(self, obs, goal) -> np.ndarray:
        """``obs: (4,)``, ``goal: (2,)``  ->  ``action: (2,) float32`` in ``[-1, 1]``."""
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        self.history.append(obs)
        while len(self.history) < self.cfg.n_obs_steps:
            self.history.appendleft(obs)
        if not self.queue:
            chunk = self.predict_chunk(np.stack(self.history), goal)
            start = self.cfg.n_obs_steps - 1
            self.queue.extend(chunk[start:start + self.n_action_steps])
        return np.clip(self.queue.popleft(), -1.0, 1.0).astype(np.float32)


def load_action_policy(name: str = "maze-umaze-action-policy", path=None, device=None, **overrides) -> MazeDiffusionPolicy:
    """The trained policy of recipe ``name`` (shipped checkpoint, or the file at ``path``);
    ``overrides``: ``ddim_steps``, ``n_action_steps``, ``seed``."""
    from ..core.recipes import load_recipe_model

    net, ckpt, cfg = load_recipe_model(name, path=path, device=device)
    norms = (LimitsNormalizer.from_state_dict(ckpt["extra"]["obs_normalizer"]),
             LimitsNormalizer.from_state_dict(ckpt["extra"]["action_normalizer"]))
    return MazeDiffusionPolicy(net, cfg, *norms, device=device, **overrides)
