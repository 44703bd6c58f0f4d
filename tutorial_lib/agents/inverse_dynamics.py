"""An inverse-dynamics model ``a_t = f(s_t, s_{t+k})``: Decision Diffuser's way from states to actions.

Decision Diffuser (Ajay et al. 2023) diffuses states only and reads the action off two consecutive
planned states with a separately trained network, ``a_t = f_phi(s_t, s_{t+1})``, fitted by regression
on the same offline data:

    phi = argmin E_{(s_t, a_t, s_{t+1}) ~ D} || f_phi(s_t, s_{t+1}) - a_t ||^2.

The book's state plans run at a stride of ``k = 4`` environment steps (as its Diffusers do), so the
model here takes the state ``k`` steps ahead, ``f(s_t, s_{t+k})``: the expert's first action on the
way from one plan point to the next. With ``k = 1`` on the point mass it is an exact inverse in free
space, ``a = (v' - d v) / (dt c)`` (``envs.maze``), which ``tests/test_what_to_diffuse.py`` checks it
recovers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..envs.maze_data import load_stream
from ..nets.mlp import mlp
from .maze_bc import input_range

__all__ = ["InverseDynamicsConfig", "InverseDynamics", "transition_rows", "inverse_dynamics_data",
           "build_inverse_dynamics", "inverse_dynamics_loss", "load_inverse_dynamics"]


@dataclass(frozen=True)
class InverseDynamicsConfig:
    """The inverse dynamics ``a_t = f(s_t, s_{t + stride})`` on a maze's expert stream (the Diffuser's).

    30k steps of batch 256: about 21 ms each on one CPU thread (11 min)."""

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    stride: int = 4
    hidden: int = 256
    depth: int = 3
    n_steps: int = 30_000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"InverseDynamicsConfig.stride must be >= 1 environment step, got {self.stride}")


class InverseDynamics(nn.Module):
    """``f(s, s_next)``: states ``(B, 4)`` and ``(B, 4)`` -> action ``(B, 2)`` in ``(-1, 1)`` (tanh).

    ``lo, hi: (4,)`` the state range mapped to ``[-1, 1]`` (the maze's bounds and speed limit), buffers.
    """

    def __init__(self, lo, hi, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32))
        if self.lo.shape != (4,) or self.hi.shape != (4,):
            raise ValueError(f"lo and hi must be (4,) state ranges, got {tuple(self.lo.shape)} and {tuple(self.hi.shape)}")
        self.net = mlp(8, 2, hidden, depth)

    def forward(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        if s.shape[-1] != 4 or s_next.shape != s.shape:
            raise ValueError(f"need s (B, 4) and s_next (B, 4), got {tuple(s.shape)} and {tuple(s_next.shape)}")
        x = 2 * (torch.cat([s, s_next], -1) - self.lo.repeat(2)) / (self.hi - self.lo).repeat(2) - 1
        return torch.tanh(self.net(x))


def transition_rows(observations, actions, stride: int) -> torch.Tensor:
    """Rows ``[s_t (4), s_{t+stride} (4), a_t (2)]`` of a continuous stream: ``(N - stride, 10) float32``."""
    obs, act = np.asarray(observations, np.float32), np.asarray(actions, np.float32)
    if obs.ndim != 2 or obs.shape[1] != 4 or act.shape != (len(obs), 2):
        raise ValueError(f"need observations (N, 4) and actions (N, 2), got {obs.shape} and {act.shape}")
    if not 1 <= stride < len(obs):
        raise ValueError(f"stride must be in [1, N) = [1, {len(obs)}), got {stride}")
    return torch.from_numpy(np.concatenate([obs[:-stride], obs[stride:], act[:-stride]], axis=1))


def inverse_dynamics_data(cfg: InverseDynamicsConfig) -> torch.Tensor:
    """``transition_rows`` of the layout's expert stream (the stream never resets, so every pair is real)."""
    data = load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed)
    return transition_rows(data["observations"], data["actions"], cfg.stride)


def build_inverse_dynamics(cfg: InverseDynamicsConfig) -> InverseDynamics:
    """The network of ``cfg``: states scaled by the maze's bounds and the speed limit (``maze_bc.input_range``)."""
    lo, hi = input_range(cfg.layout)
    return InverseDynamics(lo[:4], hi[:4], cfg.hidden, cfg.depth)


def inverse_dynamics_loss(cfg: InverseDynamicsConfig, device=None):
    """``loss(model, rows (B, 10), generator) = E || f(s_t, s_{t+k}) - a_t ||^2``."""
    def loss(model: InverseDynamics, rows: torch.Tensor, generator=None) -> torch.Tensor:
        return (model(rows[:, :4], rows[:, 4:8]) - rows[:, 8:]).pow(2).mean()
    return loss


def load_inverse_dynamics(name: str = "maze-umaze-inverse-dynamics", path=None, device=None):
    """The trained inverse dynamics (EMA weights, eval mode): ``(model, config)``."""
    from ..core.recipes import load_recipe_model

    model, _, cfg = load_recipe_model(name, path=path, device=device)
    return model, cfg
