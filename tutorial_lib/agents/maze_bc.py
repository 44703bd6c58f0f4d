"""Goal-conditioned behaviour cloning in the maze: the Diffuser benchmark's imitation baseline.

An MLP maps the state and the goal the expert was heading for to the expert's action,

    a = pi(o, g) = tanh(MLP([o, g]_n)),    loss = E || pi(o, g) - a_expert ||^2,

trained on the same waypoint-controller stream as the maze Diffusers (``maze_data``), with the
stream's own goals (``data["goals"]``) as conditions. Inputs are scaled to ``[-1, 1]`` by the maze's
bounds and the speed limit; ``tanh`` keeps actions in the action box. It sees one step at a time: it has no plan, and
where the expert's action depends on where it came from (its jittered waypoints) it learns the average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..envs.maze import MAX_SPEED
from ..envs.maze_data import load_stream
from ..envs.maze_grid import MazeGrid, check_layout
from ..nets.mlp import mlp
from ..core.utils import get_device

__all__ = ["MazeBCConfig", "GoalConditionedBC", "maze_bc_data", "maze_bc_loss", "BCMazePolicy", "load_maze_bc"]


@dataclass(frozen=True)
class MazeBCConfig:
    """Behaviour cloning on a maze's expert stream (the same stream as the layout's Diffuser)."""

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    hidden: int = 256
    depth: int = 3
    n_steps: int = 20_000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0


class GoalConditionedBC(nn.Module):
    """``pi(o, g)``: ``obs (B, 4)``, ``goal (B, 2)`` -> ``action (B, 2)`` in ``(-1, 1)``.

    ``lo, hi: (6,)`` the range of ``[o, g]`` mapped to ``[-1, 1]`` (``input_range``), kept as buffers.
    """

    def __init__(self, lo, hi, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32))
        self.net = mlp(6, 2, hidden, depth)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != 4 or goal.shape[-1] != 2 or obs.shape[:-1] != goal.shape[:-1]:
            raise ValueError(f"need obs (B, 4) and goal (B, 2), got {tuple(obs.shape)} and {tuple(goal.shape)}")
        x = 2 * (torch.cat([obs, goal], -1) - self.lo) / (self.hi - self.lo) - 1
        return torch.tanh(self.net(x))


def maze_bc_data(cfg: MazeBCConfig) -> torch.Tensor:
    """Rows ``[o (4), g (2), a (2)]`` of the layout's expert stream: ``(N, 8) float32``."""
    data = load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed)
    rows = np.concatenate([data["observations"], data["goals"], data["actions"]], axis=1)
    return torch.as_tensor(rows, dtype=torch.float32)


def input_range(layout: str) -> tuple[np.ndarray, np.ndarray]:
    """``lo, hi: (6,)`` of ``[x, y, vx, vy, gx, gy]``: the maze's bounds and the speed limit ``5``."""
    (x0, y0), (x1, y1) = MazeGrid.from_layout(check_layout(layout)).bounds
    return (np.array([x0, y0, -MAX_SPEED, -MAX_SPEED, x0, y0], np.float32),
            np.array([x1, y1, MAX_SPEED, MAX_SPEED, x1, y1], np.float32))


def build_maze_bc(cfg: MazeBCConfig) -> GoalConditionedBC:
    """The network of ``cfg``, its inputs scaled by ``input_range(cfg.layout)``."""
    return GoalConditionedBC(*input_range(cfg.layout), cfg.hidden, cfg.depth)


def maze_bc_loss(model: GoalConditionedBC, batch: torch.Tensor, generator=None) -> torch.Tensor:
    """``E || pi(o, g) - a ||^2`` over a batch of rows ``[o, g, a]: (B, 8)``."""
    return (model(batch[:, :4], batch[:, 4:6]) - batch[:, 6:]).pow(2).mean()



def maze_bc_recipe_loss(cfg: MazeBCConfig, device=None):
    """The loss of the ``maze-*-bc`` recipes (it needs nothing from the config)."""
    return maze_bc_loss


class BCMazePolicy:
    """``action = policy(obs (4,), goal (2,))`` from a trained ``GoalConditionedBC`` (for ``evaluate_policy``)."""

    def __init__(self, model: GoalConditionedBC, device=None):
        self.device = get_device(device)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, obs, goal) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, 4), device=self.device)
        g = torch.as_tensor(np.asarray(goal, dtype=np.float32).reshape(1, 2), device=self.device)
        return self.model(o, g)[0].cpu().numpy().astype(np.float32)


def load_maze_bc(layout: str = "umaze", device=None) -> BCMazePolicy:
    """The shipped BC baseline of ``layout`` (recipe ``maze-<layout>-bc``), as a policy."""
    from ..core.recipes import load_pretrained

    model, _ = load_pretrained(f"maze-{layout}-bc", device=device)
    return BCMazePolicy(model, device)
