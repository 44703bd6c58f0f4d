"""D4RL's maze2d "expert": a waypoint controller; a random policy; and their evaluation on fixed pairs.

The waypoint controller (``d4rl/pointmaze/waypoint_controller.py``) plans on the grid and tracks the
plan with a PD law:

1. when the goal changes, take a shortest 4-connected path of cells from the ball's cell to the
   goal's cell; each intermediate cell centre, jittered by ``U(-0.1, 0.1)^2``, is a waypoint, and the
   goal itself is the last one;
2. move on to the next waypoint once the ball is within 0.1 of the current one;
3. act ``a = clip(10 (w - p) - 1 * v, -1, 1)`` for waypoint ``w``, position ``p``, velocity ``v``.

D4RL finds the path by Q-iteration (50 sweeps, discount 0.99) which, on a grid with unit steps, picks
a shortest path as breadth-first search does; it jitters by ``-U(0, 0.2)`` to undo its 0.2 wall offset
(see ``maze_grid``), steers to the goal's cell centre rather than to the goal, and also requires a
per-step displacement below 0.1 before advancing, a test that the ball's speed (<= 5.2, i.e. 0.052
per step) always passes; we leave it out.

The normalized score compares a policy's return with this expert's and a random policy's:
``score = 100 (R - R_random) / (R_expert - R_random)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from tutorial_lib.envs.maze_grid import MazeGrid, check_layout

D4RL_REFERENCE_RETURNS = {
    "umaze": (23.85, 161.86),
    "medium": (13.13, 277.39),
    "large": (6.7, 273.99),
}
"""D4RL's (random, expert) reference returns for maze2d-{umaze, medium, large}-v1 (``d4rl/infos.py``).

Their expert returns are lower than what the waypoint controller itself scores with the fixed goal
``G`` and random starts: 206 / 416 / 579 here (``make_eval_pairs(layout, 100, 0, fixed_goal=True)``),
and 214 / 433 / 555 with a MuJoCo rebuild of D4RL's model and controller over 100 random starts. So normalize with returns measured by ``evaluate_policy`` on the same
pairs, and use these constants only to compare with published normalized scores."""


class WaypointController:
    """D4RL's maze2d data controller: grid shortest path to jittered waypoints, tracked by PD.

    Call it as ``action = controller(obs, goal)`` with ``obs: (4,) = (x, y, vx, vy)``,
    ``goal: (2,)``; returns ``action: (2,) float32`` in ``[-1, 1]^2``,
    ``a = clip(p_gain (w - p) - d_gain v, -1, 1)``. It replans whenever the goal changes.
    """

    def __init__(self, grid: MazeGrid, p_gain: float = 10.0, d_gain: float = 1.0,
                 waypoint_tolerance: float = 0.1, jitter: float = 0.1, seed: int | None = None):
        self.grid = grid
        self.p_gain, self.d_gain = float(p_gain), float(d_gain)
        self.waypoint_tolerance, self.jitter = float(waypoint_tolerance), float(jitter)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the current plan (the next call plans afresh)."""
        self.goal: tuple[float, float] | None = None
        self.waypoints: list[tuple[float, float]] = []
        self.waypoint_index = 0

    def plan(self, position, goal) -> np.ndarray:
        """Waypoints from ``position`` to ``goal``: ``(n, 2) float64``, the last equal to the goal."""
        cells = self.grid.shortest_path(self.grid.xy_to_cell(position), self.grid.xy_to_cell(goal))
        middle = cells[1:-1] + self.rng.uniform(-self.jitter, self.jitter, size=(max(len(cells) - 2, 0), 2))
        waypoints = np.concatenate([middle, np.asarray(goal, dtype=np.float64)[None]], axis=0)
        self.goal = (float(goal[0]), float(goal[1]))
        self.waypoints = [tuple(w) for w in waypoints.tolist()]
        self.waypoint_index = 0
        return waypoints

    def __call__(self, obs, goal) -> np.ndarray:
        x, y, vx, vy = (float(v) for v in obs[:4])
        gx, gy = float(goal[0]), float(goal[1])
        if self.goal is None or abs(gx - self.goal[0]) + abs(gy - self.goal[1]) > 1e-9:
            self.plan((x, y), (gx, gy))
        wx, wy = self.waypoints[self.waypoint_index]
        last = len(self.waypoints) - 1
        if self.waypoint_index < last and (wx - x) ** 2 + (wy - y) ** 2 < self.waypoint_tolerance**2:
            self.waypoint_index += 1
            wx, wy = self.waypoints[self.waypoint_index]
        ax = self.p_gain * (wx - x) - self.d_gain * vx
        ay = self.p_gain * (wy - y) - self.d_gain * vy
        return np.array([min(max(ax, -1.0), 1.0), min(max(ay, -1.0), 1.0)], dtype=np.float32)


class RandomPolicy:
    """The normalized score's lower reference: ``a ~ U(-1, 1)^2`` each step, ignoring obs and goal.

    One random stream from ``seed`` runs through all episodes, so a fresh policy repeats its numbers.
    """

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs, goal) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=2).astype(np.float32)


def make_eval_pairs(layout: str, n_pairs: int = 100, seed: int = 0, fixed_goal: bool = False) -> np.ndarray:
    """Fixed random (start, goal) pairs in two different free cells, each centre ``+ U(-0.1, 0.1)^2``.

    With ``fixed_goal`` every goal is the centre of the ``G`` cell (D4RL's single-task setting) and
    only the starts are random; otherwise goals are random too (the multi-task setting).
    Returns ``pairs: (n_pairs, 2, 2) float64``, ``pairs[k] = (start_xy, goal_xy)``.
    """
    grid = MazeGrid.from_layout(check_layout(layout))
    rng = np.random.default_rng(seed)
    n_free = len(grid.free_cells)
    if fixed_goal:
        g = int(np.flatnonzero((grid.free_cells == grid.goal_cell).all(axis=1))[0])
        second = np.full(n_pairs, g)
    else:
        second = rng.integers(n_free, size=n_pairs)
    first = (second + rng.integers(1, n_free, size=n_pairs)) % n_free  # never the goal's cell
    cells = np.stack([grid.free_cells[first], grid.free_cells[second]], axis=1).astype(np.float64)
    noise = rng.uniform(-0.1, 0.1, size=(n_pairs, 2, 2))
    if fixed_goal:
        noise[:, 1] = 0.0
    return cells + noise


@dataclass
class EvalResult:
    """Per-pair results of ``evaluate_policy``; each field ``(n_pairs,)``.

    ``returns``: summed rewards (steps within 0.5 of the goal); ``success``: reached the goal region;
    ``steps_to_goal``: first step whose reward is 1 (NaN when never reached).
    """

    returns: np.ndarray
    success: np.ndarray
    steps_to_goal: np.ndarray

    def summary(self) -> dict:
        """Means: ``return``, ``success_rate``, ``steps_to_goal`` (over successes)."""
        reached = self.steps_to_goal[self.success]
        return {
            "return": float(self.returns.mean()),
            "success_rate": float(self.success.mean()),
            "steps_to_goal": float(reached.mean()) if reached.size else float("nan"),
        }


def run_episode(env, policy, start, goal, seed: int = 0, velocity=None) -> tuple[np.ndarray, float, int | None]:
    """One full episode of ``env`` from ``start`` (at rest, or at ``velocity``) to ``goal``;
    ``policy.reset()`` (if any) first.

    Returns ``states: (T + 1, 4)`` (the observations, the first included), the return, and the
    first step whose reward is 1 (``None`` when the goal was never reached).
    """
    options = {"start": np.asarray(start), "goal": np.asarray(goal)}
    if velocity is not None:
        options["velocity"] = np.asarray(velocity)
    obs, info = env.reset(seed=seed, options=options)
    if hasattr(policy, "reset"):
        policy.reset()
    states, total, first, done = [obs], 0.0, None, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs, info["goal"]))
        states.append(obs)
        total += reward
        if reward > 0 and first is None:
            first = len(states) - 1
        done = terminated or truncated
    return np.array(states), total, first


def evaluate_policy(env_id: str, policy, pairs, seed: int = 0, velocities=None) -> EvalResult:
    """Run one full episode per (start, goal) pair and record return, success and steps to goal.

    Args:
        env_id: a registered id, e.g. ``"tutorial_lib/PointMaze-UMaze-v0"``.
        policy: ``policy(obs: (4,), goal: (2,)) -> action: (2,)``; its ``reset()`` (if any) is called
            before every episode.
        pairs: ``(n_pairs, 2, 2)`` from ``make_eval_pairs``.
        velocities: ``(n_pairs, 2)`` start velocities (D4RL's single-task starts), or None: at rest.
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, 2):
        raise ValueError(f"pairs must have shape (n_pairs, 2, 2) = (start, goal) x (x, y), got {pairs.shape}")
    if velocities is not None and np.shape(velocities) != (len(pairs), 2):
        raise ValueError(f"velocities must have shape (n_pairs, 2) = ({len(pairs)}, 2), got {np.shape(velocities)}")
    env = gym.make(env_id)
    returns, steps_to_goal = np.zeros(len(pairs)), np.full(len(pairs), np.nan)
    for k, (start, goal) in enumerate(pairs):
        v = None if velocities is None else velocities[k]
        _, returns[k], first = run_episode(env, policy, start, goal, seed=seed + k, velocity=v)
        if first is not None:
            steps_to_goal[k] = first
    env.close()
    return EvalResult(returns, ~np.isnan(steps_to_goal), steps_to_goal)


D4RL_REF_RETURNS = {"umaze": (23.85, 161.86), "medium": (13.13, 277.39), "large": (6.7, 273.99)}
"""D4RL's reference returns ``(REF_MIN_SCORE, REF_MAX_SCORE)`` of maze2d-{umaze,medium,large}-v1 (Fu et
al. 2020): a random policy's and the data controller's, on the single-task setting."""
SINGLE_TASK_VELOCITY_STD = 0.1
"""D4RL's reset: ``qvel = N(0, 0.1^2)`` per component (the start position is a free cell ``+ U(-0.1, 0.1)``)."""


def make_single_task_starts(layout: str, n_episodes: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """D4RL's single-task protocol: the fixed goal ``G``, random starts with small random velocities.

    Returns ``pairs: (n, 2, 2)`` (``make_eval_pairs(fixed_goal=True)``: a free cell other than G's,
    ``+ U(-0.1, 0.1)^2``) and ``velocities: (n, 2)``, ``N(0, 0.1^2)`` clipped to ``[-5, 5]``.
    """
    pairs = make_eval_pairs(layout, n_episodes, seed=seed, fixed_goal=True)
    rng = np.random.default_rng([seed, 1])
    return pairs, np.clip(rng.normal(0.0, SINGLE_TASK_VELOCITY_STD, size=(n_episodes, 2)), -5.0, 5.0)


def d4rl_normalized_score(layout: str, returns):
    """D4RL's normalized score with its reference returns: ``100 (R - REF_MIN) / (REF_MAX - REF_MIN)``."""
    lo, hi = D4RL_REF_RETURNS[check_layout(layout)]
    return normalized_score(returns, lo, hi)


def normalized_score(returns, random_return: float, expert_return: float):
    """D4RL's normalized score ``100 (R - R_random) / (R_expert - R_random)``."""
    return 100.0 * (np.asarray(returns) - random_return) / (expert_return - random_return)
