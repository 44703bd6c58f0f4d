"""MPPI on the maze2d point mass: sampling-based MPC with the true dynamics and the task's reward.

Model Predictive Path Integral control (Williams et al. 2017, "Information theoretic MPC for
model-based reinforcement learning", Algorithm 2) is the trajectory-optimization baseline of
Diffuser's maze2d table (Janner et al. 2022). At every environment step, from the exact current
state ``s_0``:

1. sample ``K`` control sequences around the nominal one, ``V_k = clip(U + eps_k, -1, 1)``,
   ``eps_k ~ N(0, sigma^2 I)``, ``U, V_k: (T, 2)``;
2. roll each out with the true dynamics, ``s_{t+1}^k = f(s_t^k, V_{k,t})`` (``batched_point_mass_step``);
3. score it with the task's reward, ``R_k = sum_{t=1..T} r(s_t^k)``;
4. weight ``w_k = exp((R_k - max_j R_j) / lambda) / sum_j exp((R_j - max_j R_j) / lambda)`` and set
   ``U <- sum_k w_k V_k``;
5. apply ``U_0`` and shift, ``U <- (U_1, ..., U_{T-1}, 0)`` (warm start for the next step).

``batched_point_mass_step`` is ``maze.point_mass_step`` vectorized over ``N`` balls with numpy: the
same equations in the same floating-point order, so both agree to rounding.
"""

from __future__ import annotations

import numpy as np

from tutorial_lib.envs.maze import (
    _SKIN, ACCEL_PER_ACTION, BALL_RADIUS, DT, GOAL_RADIUS, MAX_SPEED, VELOCITY_DECAY,
)
from tutorial_lib.envs.maze_grid import MazeGrid, check_layout

REWARDS = ("sparse", "dense")

# The 3 x 3 neighbour offsets in the order of ``maze._push_out`` (i outer, j inner): ties in depth
# go to the first, as there.
_NEIGHBOURS = np.array([(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)], dtype=np.int64)


def batched_point_mass_step(walls, pos, vel, action) -> tuple[np.ndarray, np.ndarray]:
    """One 0.01 s step of ``N`` point masses among walls: ``maze.point_mass_step`` over a batch.

    ``v' = decay * clip(v, -5, 5) + h * accel_per_action * a``, ``p' = p + h v'``, then each disc
    overlapping a wall cell is pushed out along the contact normal, deepest overlap first (up to
    4 times), and loses its inward velocity (see ``maze._push_out``).

    Args:
        walls: ``(n_rows, n_cols) bool``, True on wall cells (``MazeGrid.walls``).
        pos, vel: ``(N, 2) float`` positions ``(x, y)`` and velocities ``(vx, vy)``.
        action: ``(N, 2) float`` forces, already in ``[-1, 1]`` (not clipped here, as in the scalar step).

    Returns:
        ``pos': (N, 2) float64``, ``vel': (N, 2) float64``.
    """
    walls = np.asarray(walls, dtype=bool)
    if walls.ndim != 2:
        raise ValueError(f"walls must be a (n_rows, n_cols) bool grid, got shape {walls.shape}")
    arrays = {}
    for name, value in (("pos", pos), ("vel", vel), ("action", action)):
        a = np.asarray(value, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite")
        arrays[name] = a
    if not arrays["pos"].shape == arrays["vel"].shape == arrays["action"].shape:
        raise ValueError(
            f"pos, vel and action must share one shape (N, 2), got "
            f"{arrays['pos'].shape}, {arrays['vel'].shape}, {arrays['action'].shape}"
        )
    return _step(_pad(walls), arrays["pos"], arrays["vel"], arrays["action"])


def rollout_positions(padded_walls: np.ndarray, state, controls, hold: int = 1) -> np.ndarray:
    """Positions of ``K`` control sequences rolled out with the true dynamics, each control held ``hold`` steps.

    ``padded_walls`` from ``_pad``; ``state: (4,)`` ``(x, y, vx, vy)``; ``controls: (K, T, 2)`` (clipped to
    ``[-1, 1]``) -> positions ``p_1..p_H``: ``(K, T * hold, 2) float64``.
    """
    u = np.clip(np.asarray(controls, dtype=np.float64), -1.0, 1.0)
    state = np.asarray(state, dtype=np.float64)
    pos = np.repeat(state[None, :2], len(u), axis=0)
    vel = np.repeat(state[None, 2:4], len(u), axis=0)
    path = np.empty((len(u), u.shape[1] * hold, 2))
    for t in range(path.shape[1]):
        pos, vel = _step(padded_walls, pos, vel, u[:, t // hold])
        path[:, t] = pos
    return path


def _pad(walls: np.ndarray) -> np.ndarray:
    """Walls with a one-cell border of wall, so that the 3 x 3 neighbours of any inside point exist."""
    return np.pad(np.asarray(walls, dtype=bool), 1, constant_values=True)


def _step(padded_walls: np.ndarray, pos: np.ndarray, vel: np.ndarray, action: np.ndarray):
    """``batched_point_mass_step`` without checks; ``padded_walls`` from ``_pad``."""
    vel = VELOCITY_DECAY * np.clip(vel, -MAX_SPEED, MAX_SPEED) + (DT * ACCEL_PER_ACTION) * action
    pos = pos + DT * vel
    # Only discs reaching out of their own cell can touch a wall (maze._push_out's early return).
    cell = np.floor(pos + 0.5)
    near = np.flatnonzero(np.any(np.abs(pos - cell) > 0.5 - BALL_RADIUS, axis=1))
    if near.size:
        pos[near], vel[near] = _push_out(padded_walls, pos[near], vel[near], cell[near])
    return pos, vel


def _push_out(padded_walls, pos, vel, cell):
    """``maze._push_out`` for ``M`` discs: ``pos, vel, cell: (M, 2)``; returns new ``pos, vel``."""
    cells = cell.astype(np.int64)[:, None, :] + _NEIGHBOURS  # (M, 9, 2)
    n_rows, n_cols = padded_walls.shape
    rows = np.clip(cells[..., 0] + 1, 0, n_rows - 1)
    cols = np.clip(cells[..., 1] + 1, 0, n_cols - 1)
    is_wall = padded_walls[rows, cols]  # (M, 9)
    lo, hi = cells - 0.5, cells + 0.5
    index = np.arange(len(pos))
    for _ in range(4):
        # closest point of each square, c = clip(p, cell - 0.5, cell + 0.5); gap d = ||p - c||
        diff = pos[:, None, :] - np.minimum(np.maximum(pos[:, None, :], lo), hi)  # (M, 9, 2)
        d = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
        depth = np.where(is_wall & (d > 0.0) & (d < BALL_RADIUS), BALL_RADIUS - d, 0.0)
        k = np.argmax(depth, axis=1)  # deepest overlap, first on ties
        deepest = depth[index, k]
        hit = deepest > 0.0
        if not hit.any():
            break
        h = np.flatnonzero(hit)
        normal = diff[h, k[h]] / d[h, k[h]][:, None]  # (H, 2) from the square to the centre
        pos[h] = pos[h] + normal * (deepest[h] + _SKIN)[:, None]
        vn = vel[h, 0] * normal[:, 0] + vel[h, 1] * normal[:, 1]
        vn = np.minimum(vn, 0.0)  # remove only the velocity into the wall
        vel[h] = vel[h] - vn[:, None] * normal
    return pos, vel


class MPPIPlanner:
    """MPPI with the true maze dynamics: ``action = planner(obs, goal)``, a policy for ``evaluate_policy``.

    Each call samples ``samples`` (K) control sequences of ``horizon`` (T) steps around the nominal
    sequence, rolls them out from ``obs`` with ``batched_point_mass_step``, and averages them with
    weights ``w_k ∝ exp((R_k - max R) / temperature)``; it returns the first action of the new nominal
    sequence and shifts it by one step (see the module docstring for the equations).

    Reward. ``reward="sparse"`` (default) is the task's own: ``r_t = 1 if ||p_t - goal|| <= 0.5 else 0``,
    summed over the horizon, the sparse reward of the MPPI baseline in Diffuser's maze2d experiments.
    Rollouts that never enter the goal region all score 0, get equal weights, and the nominal
    sequence drifts as a random walk: MPPI sees no gradient towards a goal further than the horizon
    reaches. ``reward="dense"`` scores ``r_t = -||p_t - goal||`` instead; it is a diagnostic (a
    shaped reward the benchmark does not use) that shows how much of the failure is the reward's.

    Args:
        layout: ``"umaze"``, ``"medium"`` or ``"large"``.
        samples: K >= 1 sampled sequences per step (default 256).
        horizon: T >= 1 steps per sequence (default 64, i.e. 0.64 s).
        sigma: > 0, standard deviation of the action noise, in action units (actions lie in [-1, 1]).
        temperature: lambda > 0, in units of reward.
        reward: ``"sparse"`` or ``"dense"``.
        seed: seed of the noise (``np.random.default_rng``); the same seed repeats the same actions.

    ``obs: (4,) = (x, y, vx, vy)``, ``goal: (2,)``; returns ``action: (2,) float32`` in ``[-1, 1]^2``.
    ``nominal: (T, 2) float64`` holds the warm-started sequence; ``reset()`` zeroes it.
    """

    def __init__(self, layout: str = "umaze", samples: int = 256, horizon: int = 64, sigma: float = 0.5,
                 temperature: float = 1.0, reward: str = "sparse", seed: int | None = None):
        self.grid = MazeGrid.from_layout(check_layout(layout))
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be an integer >= 1 (sequences per step), got {samples!r}")
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1 (steps per sequence), got {horizon!r}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0 (action noise std), got {sigma!r}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature (lambda) must be a finite number > 0, got {temperature!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.layout, self.samples, self.horizon = layout, int(samples), int(horizon)
        self.sigma, self.temperature, self.reward = float(sigma), float(temperature), reward
        self._walls = _pad(self.grid.walls)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Zero the nominal sequence; with ``seed``, also restart the noise from it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.nominal = np.zeros((self.horizon, 2))

    def rollout_rewards(self, state, goal, controls) -> np.ndarray:
        """Reward of each control sequence from ``state``: ``R_k = sum_{t=1..T} r(p_t^k)``.

        ``state: (4,)``, ``goal: (2,)``, ``controls: (K, T, 2)`` in ``[-1, 1]`` -> ``R: (K,) float64``.
        """
        n = len(controls)
        pos = np.repeat(np.asarray(state[:2], dtype=np.float64)[None], n, axis=0)
        vel = np.repeat(np.asarray(state[2:4], dtype=np.float64)[None], n, axis=0)
        goal = np.asarray(goal, dtype=np.float64)
        total = np.zeros(n)
        for t in range(controls.shape[1]):
            pos, vel = _step(self._walls, pos, vel, controls[:, t])
            dist = np.sqrt(np.sum((pos - goal) ** 2, axis=1))
            total += (dist <= GOAL_RADIUS) if self.reward == "sparse" else -dist
        return total

    def __call__(self, obs, goal) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        goal = np.asarray(goal, dtype=np.float64)
        if obs.shape != (4,) or not np.all(np.isfinite(obs)):
            raise ValueError(f"obs must be a finite (4,) array (x, y, vx, vy), got shape {obs.shape}")
        if goal.shape != (2,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"goal must be a finite (2,) array (x, y), got shape {goal.shape}")
        eps = self.rng.normal(0.0, self.sigma, size=(self.samples, self.horizon, 2))
        controls = np.clip(self.nominal[None] + eps, -1.0, 1.0)  # V_k: (K, T, 2)
        returns = self.rollout_rewards(obs, goal, controls)
        weights = np.exp((returns - returns.max()) / self.temperature)
        weights /= weights.sum()
        self.nominal = np.einsum("k,ktd->td", weights, controls)  # U <- sum_k w_k V_k
        action = np.clip(self.nominal[0], -1.0, 1.0).astype(np.float32)
        self.nominal = np.concatenate([self.nominal[1:], np.zeros((1, 2))])  # warm start
        return action
