"""Trajectory windows for Diffuser: the transition layout, min-max normalisation, and batches.

Layout. Diffuser (Janner et al. 2022) diffuses whole trajectories ``tau = (a_0, o_0, ..., a_{H-1}, o_{H-1})``
stored as an array ``x: (H, D)`` with ``x[t] = [a_t, o_t]``: the action first, then the observation
(``diffuser/datasets/sequence.py`` concatenates ``[actions, observations]``). In the maze,
``a_t = (ax, ay)`` is the force applied *at* ``o_t = (x, y, vx, vy)``, so ``D = 2 + 4 = 6`` and

    x[t, 0:2] = a_t,   x[t, 2:6] = o_t,   o_{t+1} = dynamics(o_t, a_t).

Windows. The maze data is one continuous stream (``maze_data``); Diffuser cuts D4RL's stream where the
ball leaves the fixed goal ``G``'s 0.5-disc (``split_at_goal_exits``) and draws windows of ``H``
consecutive steps that lie wholly inside one such path (its ``use_padding=False`` setting for maze2d),
so a window never crosses a cut and nothing is padded. Cutting at every new random goal instead
(``split="arrivals"``) leaves few paths as long as a U-Maze horizon of 128 (about 6% of the steps
start a window, against about 80%), so Diffuser's cut is the default.

Normalisation. Every coordinate is mapped to ``[-1, 1]`` by its minimum and maximum over the data
(Diffuser's ``LimitsNormalizer``): ``x_n = 2 (x - lo) / (hi - lo) - 1``. The sampler clips its
clean-sample estimates to ``[-1, 1]``, so plans stay inside the data's range.
"""

from __future__ import annotations

import numpy as np
import torch

from ..envs.maze_data import split_at_arrivals, split_at_goal_exits
from ..envs.maze_grid import MazeGrid

__all__ = ["ACTION_DIM", "OBSERVATION_DIM", "TRANSITION_DIM", "SPLITS", "LimitsNormalizer",
           "make_transitions", "split_stream", "window_starts", "TrajectoryWindows"]

ACTION_DIM = 2
"""``(ax, ay)``, the first two numbers of a transition."""
OBSERVATION_DIM = 4
"""``(x, y, vx, vy)``, the last four numbers of a transition."""
TRANSITION_DIM = ACTION_DIM + OBSERVATION_DIM

SPLITS = ("goal_exits", "arrivals", "none")


class LimitsNormalizer:
    """Min-max scaling of each coordinate to ``[-1, 1]``: ``x_n = 2 (x - lo) / (hi - lo) - 1``.

    Args:
        lo, hi: ``(D,)`` per-coordinate minimum and maximum (``hi > lo``; a constant coordinate
            gets ``hi = lo + 1`` when fitted, so it maps to -1 instead of dividing by zero).
    Shapes: ``normalize`` and ``unnormalize`` take ``(..., D)`` tensors or arrays and return the same type.
    """

    def __init__(self, lo, hi):
        self.lo = torch.as_tensor(lo, dtype=torch.float32).flatten().cpu()
        self.hi = torch.as_tensor(hi, dtype=torch.float32).flatten().cpu()
        if self.lo.shape != self.hi.shape or not (self.hi > self.lo).all():
            raise ValueError(f"need lo and hi of equal length with hi > lo everywhere, got lo={self.lo.tolist()}, "
                             f"hi={self.hi.tolist()}")

    @classmethod
    def fit(cls, x) -> "LimitsNormalizer":
        """The normaliser of data ``x: (N, D)``: ``lo, hi`` its per-column minimum and maximum."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"fit needs data of shape (N, D) with N >= 1, got {tuple(x.shape)}")
        lo, hi = x.min(0).values, x.max(0).values
        return cls(lo, torch.where(hi > lo, hi, lo + 1))

    @property
    def dim(self) -> int:
        return len(self.lo)

    def _apply(self, x, fn):
        is_numpy = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if is_numpy else x
        if t.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} numbers in the last axis, got shape {tuple(t.shape)}")
        out = fn(t, self.lo.to(t.device, t.dtype), self.hi.to(t.device, t.dtype))
        return out.numpy() if is_numpy else out

    def normalize(self, x):
        """``2 (x - lo) / (hi - lo) - 1``: data range to ``[-1, 1]``."""
        return self._apply(x, lambda t, lo, hi: 2 * (t - lo) / (hi - lo) - 1)

    def unnormalize(self, x):
        """``lo + (x + 1) (hi - lo) / 2``: the inverse of ``normalize``."""
        return self._apply(x, lambda t, lo, hi: lo + (t + 1) * (hi - lo) / 2)

    def sub(self, start: int, stop: int) -> "LimitsNormalizer":
        """The normaliser of coordinates ``start:stop`` only (e.g. the observations of a transition)."""
        return LimitsNormalizer(self.lo[start:stop], self.hi[start:stop])

    def state_dict(self) -> dict:
        """``{"lo": [...], "hi": [...]}`` of plain floats, for a ``weights_only`` checkpoint."""
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LimitsNormalizer":
        return cls(state["lo"], state["hi"])


def make_transitions(data: dict) -> np.ndarray:
    """The maze data as transitions ``[a_t, o_t]``: ``(N, 6) float32`` from ``actions: (N, 2)``, ``observations: (N, 4)``."""
    actions, observations = np.asarray(data["actions"]), np.asarray(data["observations"])
    if actions.shape[1:] != (ACTION_DIM,) or observations.shape[1:] != (OBSERVATION_DIM,) \
            or len(actions) != len(observations):
        raise ValueError(f"expected actions (N, 2) and observations (N, 4), got {actions.shape} and {observations.shape}")
    return np.concatenate([actions, observations], axis=1).astype(np.float32)


def split_stream(data: dict, split: str = "goal_exits") -> np.ndarray:
    """Paths of the stream, ``(n_paths, 2) int64`` rows ``[start, stop)``, covering it without overlap.

    ``"goal_exits"``: Diffuser's cut, where the ball leaves the 0.5-disc of the layout's goal ``G``;
    ``"arrivals"``: at every goal reached (segments of constant goal, the last unfinished one kept);
    ``"none"``: the whole stream as one path (it is continuous, so every window is a valid trajectory).
    """
    n = len(data["observations"])
    if split == "goal_exits":
        goal = MazeGrid.from_layout(str(data["layout"])).goal_cell
        return split_at_goal_exits(data["observations"], np.asarray(goal, dtype=np.float64))
    if split == "arrivals":
        return split_at_arrivals(data, include_last=True)
    if split == "none":
        return np.array([[0, n]], dtype=np.int64)
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")


def window_starts(paths, horizon: int) -> np.ndarray:
    """Every start ``s`` with ``[s, s + horizon)`` inside one path ``[start, stop)``: ``(M,) int64``, sorted.

    A path of length ``L`` gives ``max(L - horizon + 1, 0)`` windows; shorter paths give none.
    """
    paths = np.asarray(paths, dtype=np.int64).reshape(-1, 2)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    starts = [np.arange(a, b - horizon + 1, dtype=np.int64) for a, b in paths if b - a >= horizon]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


class TrajectoryWindows:
    """Normalised windows ``x: (H, D)`` of a transition stream, drawn so none crosses a path boundary.

    With ``stride = s > 1`` a window keeps every ``s``-th transition, ``x[k] = tau[t + k s]``: ``H``
    points spanning ``(H - 1) s + 1`` environment steps (a plan at a coarser time step, see
    ``diffuser``). ``stride = 1`` is Diffuser's layout.

    Args:
        transitions: ``(N, D)`` transitions ``[a_t, o_t]`` (raw units).
        paths: ``(n_paths, 2)`` rows ``[start, stop)`` (from ``split_stream``).
        horizon: window length ``H`` (points).
        normalizer: a fitted ``LimitsNormalizer``; by default fitted on ``transitions``.
        stride: environment steps between consecutive points of a window.
    """

    def __init__(self, transitions, paths, horizon: int, normalizer: LimitsNormalizer | None = None,
                 stride: int = 1):
        if int(stride) < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride}")
        transitions = torch.as_tensor(np.asarray(transitions, dtype=np.float32))
        self.normalizer = normalizer if normalizer is not None else LimitsNormalizer.fit(transitions)
        self.data = self.normalizer.normalize(transitions)            # (N, D) in [-1, 1]
        self.horizon, self.stride = int(horizon), int(stride)
        span = (self.horizon - 1) * self.stride + 1
        self.starts = torch.as_tensor(window_starts(paths, span))     # (M,)
        if len(self.starts) == 0:
            raise ValueError(f"no path is at least {span} steps long (horizon {horizon}, stride {stride}); longest: "
                             f"{int(np.diff(np.asarray(paths)).max()) if len(paths) else 0} steps; "
                             "use a shorter horizon, more data, or split='none'")
        self._offsets = torch.arange(self.horizon) * self.stride

    @classmethod
    def from_maze_data(cls, data: dict, horizon: int, split: str = "goal_exits",
                       normalizer: LimitsNormalizer | None = None, stride: int = 1) -> "TrajectoryWindows":
        """Windows of a maze dataset (``maze_data.generate_dataset`` / ``load_or_generate``)."""
        return cls(make_transitions(data), split_stream(data, split), horizon, normalizer, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        """Window ``i``: ``(H, D)`` normalised."""
        return self.data[int(self.starts[i]) + self._offsets]

    def to(self, device) -> "TrajectoryWindows":
        """Move the data to ``device`` (in place); returns self."""
        self.data, self.starts, self._offsets = (v.to(device) for v in (self.data, self.starts, self._offsets))
        return self

    def sample_all(self) -> torch.Tensor:
        """Every window, in order of its start: ``(M, H, D)`` normalised."""
        rows = self.starts[:, None] + self._offsets[None, :]
        return self.data[rows]

    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` windows drawn uniformly with replacement: ``(B, H, D)`` normalised."""
        device = generator.device if generator is not None else self.starts.device
        k = torch.randint(0, len(self.starts), (batch_size,), generator=generator, device=device)
        rows = self.starts[k.to(self.starts.device)][:, None] + self._offsets[None, :]   # (B, H)
        return self.data[rows]
