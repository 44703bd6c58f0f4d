"""Windows of the maze expert stream cut where the expert's goal changes, held at the arrival.

The Diffuser's windows (``trajectories.TrajectoryWindows``) are conditioned by inpainting the goal
*state* at an index of the plan. The two models of the "what is diffused" comparison are told the
goal instead, as a condition ``g`` (Decision Diffuser's classifier-free guidance, Diffusion Policy's
goal input). The natural label of a window is then the goal the expert was heading for at its first
step, ``goals[t]`` of the stream (``maze_data``): it is defined for goals beyond one window too.

Each step ``t`` of the stream belongs to one *goal segment* ``[start, stop)`` (``split_at_arrivals``):
the expert chases one goal and arrives at ``stop - 1``, then draws a new one. A window drawn at ``t``
looks forward only inside its segment; past the arrival it is *held*:

* states at stride ``s``: ``x[k] = o[t + k s]`` while ``t + k s < stop``, then the arrival position at
  rest (velocity 0), so that a plan to ``g`` ends at ``g`` and stays there;
* actions: ``a[t - To + 1 .. t - To + H]``, then ``0`` (no force) after the arrival;
* observation history: ``o[t - To + 1 .. t]``, the stream's own past (clamped at its first step).

Everything is min-max normalised (``LimitsNormalizer``): observations by their range, goals by the
range of the positions, actions by theirs.
"""

from __future__ import annotations

import numpy as np
import torch

from ..envs.maze_data import load_stream, split_at_arrivals
from .trajectories import LimitsNormalizer

__all__ = ["GoalSegments", "goal_segments"]


class GoalSegments:
    """The normalised stream and, for every step, the end of its goal segment.

    Args:
        observations: ``(N, 4)``, actions: ``(N, 2)``, goals: ``(N, 2)`` the raw stream.
        segments: ``(S, 2)`` rows ``[start, stop)`` covering ``0 .. N`` (``split_at_arrivals``).
    Attributes:
        obs ``(N, 4)``, actions ``(N, 2)``, goals ``(N, 2)`` normalised; ``stop: (N,)`` the end of each
        step's segment; ``obs_normalizer``, ``action_normalizer``.
    """

    def __init__(self, observations, actions, goals, segments):
        observations, actions, goals = (np.asarray(v, dtype=np.float32) for v in (observations, actions, goals))
        n = len(observations)
        if observations.shape != (n, 4) or actions.shape != (n, 2) or goals.shape != (n, 2):
            raise ValueError(f"need observations (N, 4), actions (N, 2), goals (N, 2); got {observations.shape}, "
                             f"{actions.shape}, {goals.shape}")
        segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        if len(segments) == 0 or segments[0, 0] != 0 or segments[-1, 1] != n or \
                (segments[1:, 0] != segments[:-1, 1]).any():
            raise ValueError(f"segments must cover the stream 0 .. {n} without gaps, e.g. "
                             "split_at_arrivals(data, include_last=True)")
        self.obs_normalizer = LimitsNormalizer.fit(observations)
        self.action_normalizer = LimitsNormalizer.fit(actions)
        self.obs = self.obs_normalizer.normalize(torch.from_numpy(observations))
        self.actions = self.action_normalizer.normalize(torch.from_numpy(actions))
        self.goals = self.goal_normalizer.normalize(torch.from_numpy(goals))
        self.stop = torch.from_numpy(np.repeat(segments[:, 1], segments[:, 1] - segments[:, 0]))
        self.rest_velocity = self.obs_normalizer.normalize(torch.zeros(4))[2:]   # velocity 0, normalised
        self.rest_action = self.action_normalizer.normalize(torch.zeros(2))

    @property
    def goal_normalizer(self) -> LimitsNormalizer:
        """The normaliser of positions ``(x, y)``: the first two coordinates of the observations'."""
        return self.obs_normalizer.sub(0, 2)

    def __len__(self) -> int:
        return len(self.obs)

    def to(self, device) -> "GoalSegments":
        """Move the tensors to ``device`` (in place); returns self."""
        for k in ("obs", "actions", "goals", "stop", "rest_velocity", "rest_action"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def draw_steps(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` steps ``t`` of the stream, uniform with replacement: ``(B,)`` long."""
        device = generator.device if generator is not None else self.obs.device
        return torch.randint(0, len(self.obs), (batch_size,), generator=generator, device=device).to(self.obs.device)

    def state_windows(self, t: torch.Tensor, horizon: int, stride: int) -> torch.Tensor:
        """``(B, H, 4)``: ``o[t + k stride]`` for ``k < H``, held at the arrival (at rest) past it."""
        idx = t[:, None] + stride * torch.arange(horizon, device=t.device)            # (B, H)
        last = (self.stop[t] - 1)[:, None]
        held = idx > last
        x = self.obs[torch.minimum(idx, last)]
        x[..., 2:] = torch.where(held[..., None], self.rest_velocity, x[..., 2:])
        return x

    def obs_history(self, t: torch.Tensor, n_obs_steps: int) -> torch.Tensor:
        """``(B, To, 4)``: ``o[t - To + 1 .. t]``, indices clamped at the stream's first step."""
        idx = (t[:, None] + torch.arange(-n_obs_steps + 1, 1, device=t.device)).clamp(min=0)
        return self.obs[idx]

    def action_chunks(self, t: torch.Tensor, n_obs_steps: int, horizon: int) -> torch.Tensor:
        """``(B, H, 2)``: ``a[t - To + 1 .. t - To + H]``, no force (``a = 0``) after the arrival."""
        idx = (t[:, None] + torch.arange(-n_obs_steps + 1, horizon - n_obs_steps + 1, device=t.device)).clamp(min=0)
        held = idx > (self.stop[t] - 1)[:, None]
        a = self.actions[idx.clamp(max=len(self.actions) - 1)]
        return torch.where(held[..., None], self.rest_action, a)


def goal_segments(cfg) -> GoalSegments:
    """The goal segments of the stream of a maze config (``layout``, ``n_transitions``, ``data_seed``):
    the same stream as the layout's Diffuser (``diffuser.maze_windows``)."""
    data = load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed)
    return GoalSegments(data["observations"], data["actions"], data["goals"], split_at_arrivals(data, include_last=True))
