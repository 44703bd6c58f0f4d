"""The maze2d offline dataset: one long stream of the waypoint controller chasing random goals.

As in D4RL's ``scripts/generation/generate_maze2d_datasets.py``, a single ball runs without resets:
at each step ``t`` we record ``(o_t, a_t, g_t)`` with ``a_t = controller(o_t, g_t)``, then step the
physics. When the ball is within ``arrival_radius`` of its goal (``arrivals[t]``), or has chased it
for an episode length (``timeouts[t]``, which the expert never needs), a new goal is drawn: a free
cell's centre ``+ U(-0.1, 0.1)^2``. So ``o_{t+1}`` always follows ``(o_t, a_t)`` by the dynamics, and a
segment ``[start, stop)`` of constant goal ends at its arrival, ``o_{stop - 1}``.

Diffuser (Janner et al. 2022) cuts D4RL's stream differently: where the ball leaves the 0.5-disc of
the single-task goal ``G`` (``maze2d_set_terminals``); ``split_at_goal_exits`` reproduces that.

``dynamics_noise = sigma > 0`` records the same controller in the stochastic maze of
``PointMazeEnv(dynamics_noise=sigma)``: a velocity kick ``sigma * N(0, I)`` each step, drawn from a third
generator of the seed (the goals and the controller's draws are those of the noise-free stream).

Files are ``.npz`` of plain arrays (no pickle)::

    python -m tutorial_lib.envs.maze_data --layout umaze --steps 1000000 --seed 0 --out data/maze/umaze.npz
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from tutorial_lib.core.assets import data_dir
from tutorial_lib.envs.maze import EPISODE_LENGTHS, RESET_NOISE, check_dynamics_noise, point_mass_step
from tutorial_lib.envs.maze_expert import WaypointController
from tutorial_lib.envs.maze_grid import LAYOUTS, MazeGrid, check_layout

D4RL_SIZES = {"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}
"""Transitions in D4RL's maze2d-{umaze, medium, large}-v1 datasets."""

ARRAY_KEYS = {
    "observations": ((4,), np.float32),
    "actions": ((2,), np.float32),
    "goals": ((2,), np.float32),
    "arrivals": ((), np.bool_),
    "timeouts": ((), np.bool_),
}


def generate_dataset(layout: str, n_steps: int, seed: int = 0, arrival_radius: float = 0.1,
                     dynamics_noise: float = 0.0) -> dict:
    """Run the waypoint controller for ``n_steps`` in one continuous stream.

    Returns a dict of arrays: ``observations: (N, 4) float32``, ``actions: (N, 2) float32``,
    ``goals: (N, 2) float32``, ``arrivals: (N,) bool``, ``timeouts: (N,) bool``, and the 0-d
    ``layout`` (str), ``seed`` (int64), ``arrival_radius`` (float64), ``dynamics_noise`` (float64).
    Equal seeds give equal arrays.
    """
    sigma = check_dynamics_noise(dynamics_noise)
    grid = MazeGrid.from_layout(check_layout(layout))
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive number of transitions, got {n_steps}")
    goal_seq, control_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    goal_rng, control_rng = np.random.default_rng(goal_seq), np.random.default_rng(control_seq)
    kicks = (sigma * np.random.default_rng(noise_seq).standard_normal((n_steps, 2))).tolist() if sigma > 0 else None
    controller = WaypointController(grid, seed=control_rng)
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    max_steps = EPISODE_LENGTHS[layout]

    def random_point():
        cell = grid.free_cells[goal_rng.integers(len(grid.free_cells))]
        return tuple((cell + goal_rng.uniform(-RESET_NOISE, RESET_NOISE, size=2)).tolist())

    data = {k: np.zeros((n_steps, *shape), dtype) for k, (shape, dtype) in ARRAY_KEYS.items()}
    pos, vel, goal, chased = random_point(), (0.0, 0.0), random_point(), 0
    for t in range(n_steps):
        obs = pos + vel
        action = controller(obs, goal)
        arrived = math.hypot(pos[0] - goal[0], pos[1] - goal[1]) <= arrival_radius
        data["observations"][t] = obs
        data["actions"][t] = action
        data["goals"][t] = goal
        data["arrivals"][t] = arrived
        data["timeouts"][t] = timed_out = not arrived and chased >= max_steps
        pos, vel = point_mass_step(walls, pos, vel, (float(action[0]), float(action[1])),
                                   (0.0, 0.0) if kicks is None else kicks[t])
        chased += 1
        if arrived or timed_out:
            goal, chased = random_point(), 0
    data.update(layout=np.array(layout), seed=np.array(seed, dtype=np.int64),
                arrival_radius=np.array(arrival_radius, dtype=np.float64),
                dynamics_noise=np.array(sigma, dtype=np.float64))
    return data


def split_at_arrivals(data: dict, include_last: bool = False) -> np.ndarray:
    """Segments of constant goal: ``(n_segments, 2) int64`` rows ``[start, stop)``.

    Each segment ends at an arrival (or timeout) ``t = stop - 1``; the next starts at ``stop``. The
    unfinished tail after the last arrival is dropped unless ``include_last``.
    """
    ends = np.flatnonzero(np.asarray(data["arrivals"]) | np.asarray(data["timeouts"])) + 1
    n = len(data["arrivals"])
    if include_last and (len(ends) == 0 or ends[-1] < n):
        ends = np.append(ends, n)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return np.stack([starts, ends], axis=1).astype(np.int64) if len(ends) else np.zeros((0, 2), np.int64)


def split_at_goal_exits(observations, goal, radius: float = 0.5) -> np.ndarray:
    """Diffuser's cut of the stream: a path ends at ``t`` when ``o_t`` is within ``radius`` of the fixed
    ``goal`` and ``o_{t+1}`` is not. Returns ``(n_paths, 2) int64`` rows ``[start, stop)``, the last
    path running to the end of the stream.
    """
    xy = np.asarray(observations)[:, :2]
    at_goal = np.linalg.norm(xy - np.asarray(goal), axis=-1) < radius
    ends = np.flatnonzero(at_goal[:-1] & ~at_goal[1:]) + 1
    ends = np.append(ends, len(xy))
    starts = np.concatenate([[0], ends[:-1]])
    return np.stack([starts, ends], axis=1).astype(np.int64)


def arrival_points(data: dict) -> np.ndarray:
    """Positions where goals were reached: ``(n_arrivals, 2) float32``, ``o_t[:2]`` for ``arrivals[t]``."""
    return np.asarray(data["observations"])[np.asarray(data["arrivals"]), :2]


def save_dataset(path: str, data: dict) -> None:
    """Write ``data`` to a compressed ``.npz`` of plain arrays (no pickled objects)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **data)


def load_dataset(path: str) -> dict:
    """Read a dataset written by ``save_dataset`` (``allow_pickle=False``) and check its arrays."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    missing = set(ARRAY_KEYS) | {"layout", "seed"}
    missing -= set(data)
    if missing:
        raise ValueError(f"{path} is not a maze dataset: missing arrays {sorted(missing)}")
    n = len(data["observations"])
    for key, (shape, dtype) in ARRAY_KEYS.items():
        if data[key].shape != (n, *shape) or data[key].dtype != dtype:
            raise ValueError(f"{path}: {key} should be {(n, *shape)} {np.dtype(dtype)}, "
                             f"got {data[key].shape} {data[key].dtype}")
    data["layout"] = str(data["layout"])
    check_layout(data["layout"])
    data["dynamics_noise"] = float(data.get("dynamics_noise", 0.0))   # files written before the option: 0
    return data


def load_stream(layout: str, n_steps: int, seed: int = 0, dynamics_noise: float = 0.0) -> dict:
    """The expert stream of ``layout`` kept in ``data/maze/`` (generated and saved on first use); a noisy one
    (``dynamics_noise > 0``) has the noise in its file name, e.g. ``umaze_1000000_seed0_noise0.03.npz``."""
    sigma = check_dynamics_noise(dynamics_noise)
    suffix = f"_noise{sigma:g}" if sigma > 0 else ""
    path = data_dir() / "maze" / f"{layout}_{n_steps}_seed{seed}{suffix}.npz"
    return load_or_generate(layout, str(path), n_steps=n_steps, seed=seed, dynamics_noise=sigma)


def load_or_generate(layout: str, path: str, n_steps: int | None = None, seed: int = 0,
                     dynamics_noise: float = 0.0) -> dict:
    """Load the dataset at ``path`` if it was made with this layout, size, seed and noise; else generate and save it.

    ``n_steps`` defaults to D4RL's size for the layout (``D4RL_SIZES``); generation runs at about
    10 s per million transitions on one CPU core.
    """
    n_steps = D4RL_SIZES[check_layout(layout)] if n_steps is None else int(n_steps)
    sigma = check_dynamics_noise(dynamics_noise)
    if os.path.exists(path):
        data = load_dataset(path)
        made = (data["layout"], len(data["observations"]), int(data["seed"]), data["dynamics_noise"])
        if made == (layout, n_steps, seed, sigma):
            return data
    data = generate_dataset(layout, n_steps, seed=seed, dynamics_noise=sigma)
    save_dataset(path, data)
    data["layout"], data["dynamics_noise"] = layout, sigma
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate a maze2d-style dataset with the waypoint controller.")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="umaze")
    parser.add_argument("--steps", type=int, default=None, help="transitions (default: D4RL's size for the layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dynamics-noise", type=float, default=0.0,
                        help="std of the velocity kick added each step, m/s (default 0: D4RL's deterministic maze)")
    parser.add_argument("--out", required=True, help="output .npz path, e.g. data/maze/umaze.npz")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = D4RL_SIZES[args.layout]
    tic = time.perf_counter()
    data = generate_dataset(args.layout, args.steps, seed=args.seed, dynamics_noise=args.dynamics_noise)
    generate_s = time.perf_counter() - tic
    save_dataset(args.out, data)
    segments = split_at_arrivals(data)
    print(f"{args.layout}: {args.steps} transitions in {generate_s:.1f} s, {len(segments)} goals reached "
          f"(mean {np.diff(segments).mean():.1f} steps), {int(data['timeouts'].sum())} timeouts; "
          f"{args.out}: {os.path.getsize(args.out) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
