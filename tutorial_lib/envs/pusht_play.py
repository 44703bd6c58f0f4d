"""Exploratory ("play") interaction data for Push-T: random pushes, for learning the dynamics.

Model-based RL learns its model from whatever interaction it has, rarely from demonstrations of
one task. Demonstrations also carry a prior that is not dynamics: every one ends with the T on
its goal, so a sequence model trained on them learns *where* episodes end, and a prediction
window that reaches the end of an episode is judged partly on that. Play data have no goal.

Each episode resets :class:`~tutorial_lib.envs.pusht.PushTEnv` from its seed and runs
``episode_steps`` control steps. The commanded agent position moves in straight lines, at a
speed drawn per push (``speed``, pixels per control step), through a sequence of pushes: pick a
direction ``phi`` at random, go to the point ``approach`` pixels from the block's centre on that
side, then push through the centre to a point ``depth`` pixels past it (also drawn per push). The
block is hit from every side, at every offset the agent's path happens to make, and sometimes
pushed into a wall; the agent may also brush the block on its way to the next approach point.

Open loop (the default): every push aims at the block's centre *at the start of the episode*,
not where the block is now. A pusher that aimed at the current block would write the block's
position into its later actions, and a model given the whole action sequence, as the sequence
model of the compounding study is, could read the state off the actions instead of predicting
it. Open-loop actions depend on the start state alone, which both models are given; so the
first push hits, and later ones hit or miss as the block has moved. Episodes are one window
long (64 steps), so each window starts where its actions were decided.

Saved as ``.npz`` (no pickle) with the demonstrations' layout (:mod:`tutorial_lib.envs.pusht_demos`):
``obs (N, 5)`` ``[agent_x, agent_y, block_x, block_y, block_angle]`` before each action,
``actions (N, 2)``, ``episode_ends (E,)``, ``episode_seeds (E,)``, ``seed``.

Command line::

    python -m tutorial_lib.envs.pusht_play --episodes 3000 --seed 0 --out data/pusht/play.npz
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from .pusht import WORKSPACE_SIZE, PushTEnv

__all__ = ["PlayConfig", "PlayPusher", "play_episode", "generate_play_data", "load_play_data", "main"]

MARGIN = 10.0
"""Commanded positions stay this far inside the workspace."""


@dataclass(frozen=True)
class PlayConfig:
    """The random pusher: ``approach`` (px from the block's centre), ``depth`` and ``speed`` ranges
    (px past the centre; px per control step, each drawn uniformly per push). ``open_loop``: every
    push aims at where the block was at the start of the episode, so the actions depend on the
    start state alone (see the module doc)."""

    episode_steps: int = 64
    approach: float = 90.0
    depth: tuple = (0.0, 60.0)
    speed: tuple = (8.0, 25.0)
    open_loop: bool = True

    def __post_init__(self):
        object.__setattr__(self, "depth", tuple(self.depth))
        object.__setattr__(self, "speed", tuple(self.speed))
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be a range (lo, hi) with 0 < lo <= hi, got {self.speed}")
        if not 0 <= self.depth[0] <= self.depth[1]:
            raise ValueError(f"depth must be a range (lo, hi) with 0 <= lo <= hi, got {self.depth}")


class PlayPusher:
    """``action = pusher(obs)``: the commanded position, moving through random pushes (module doc)."""

    def __init__(self, cfg: PlayConfig, seed: int):
        self.cfg, self.rng = cfg, np.random.default_rng(seed)
        self.command: np.ndarray | None = None     # the commanded position, set on the first call
        self.anchor: np.ndarray | None = None      # the block's position on the first call (open loop)
        self.waypoints: list[np.ndarray] = []
        self.speed = 0.0                           # drawn with each push

    def _new_push(self, block_xy: np.ndarray) -> None:
        phi = self.rng.uniform(-np.pi, np.pi)
        u = np.array([np.cos(phi), np.sin(phi)])
        depth = self.rng.uniform(*self.cfg.depth)
        self.waypoints = [block_xy + self.cfg.approach * u, block_xy - depth * u]
        self.speed = self.rng.uniform(*self.cfg.speed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if self.command is None:
            self.command, self.anchor = obs[:2].copy(), obs[2:4].copy()
        if not self.waypoints:
            self._new_push(self.anchor if self.cfg.open_loop else obs[2:4])
        step = np.clip(self.waypoints[0], MARGIN, WORKSPACE_SIZE - MARGIN) - self.command
        dist = float(np.linalg.norm(step))
        if dist <= self.speed:
            self.command = self.command + step
            self.waypoints.pop(0)
        else:
            self.command = self.command + step * (self.speed / dist)
        return self.command.astype(np.float32)


def play_episode(env_seed: int, cfg: PlayConfig = PlayConfig()) -> dict:
    """One episode of play from ``env.reset(seed=env_seed)`` (pusher seeded by the same number):
    ``{"obs": (T, 5), "actions": (T, 2)}``, ``T = cfg.episode_steps``. Goal and success are ignored."""
    env = PushTEnv()
    obs, _ = env.reset(seed=int(env_seed))
    pusher = PlayPusher(cfg, seed=int(env_seed))
    observations, actions = [], []
    for _ in range(cfg.episode_steps):
        action = pusher(obs)
        observations.append(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    return {"obs": np.array(observations, np.float32), "actions": np.array(actions, np.float32)}


def generate_play_data(n_episodes: int = 3000, seed: int = 0, cfg: PlayConfig = PlayConfig()) -> dict:
    """``n_episodes`` of play, reset seeds drawn from ``default_rng(seed)`` (deterministic)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    seeds = np.random.default_rng(seed).integers(10**6, 2**31, size=n_episodes)
    episodes = [play_episode(s, cfg) for s in seeds]
    return {"obs": np.concatenate([e["obs"] for e in episodes]),
            "actions": np.concatenate([e["actions"] for e in episodes]),
            "episode_ends": np.cumsum([len(e["actions"]) for e in episodes]).astype(np.int64),
            "episode_seeds": seeds.astype(np.int64), "seed": np.array(seed, dtype=np.int64)}


def load_play_data(path: str) -> dict:
    """Read a play file, checking its arrays: ``{"obs", "actions", "episode_ends", ...}``."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    missing = {"obs", "actions", "episode_ends"} - set(data)
    if missing:
        raise ValueError(f"{path} is not a Push-T play file: missing {sorted(missing)}")
    n = len(data["obs"])
    if data["obs"].shape != (n, 5) or data["actions"].shape != (n, 2) or data["episode_ends"][-1] != n:
        raise ValueError(f"{path}: inconsistent shapes obs {data['obs'].shape}, actions {data['actions'].shape}, "
                         f"last episode end {data['episode_ends'][-1]}")
    if not (np.isfinite(data["obs"]).all() and np.isfinite(data["actions"]).all()):
        raise ValueError(f"{path} contains NaN or infinite values")
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.envs.pusht_play", description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    data = generate_play_data(args.episodes, args.seed)
    np.savez_compressed(args.out, **data)
    print(f"{args.episodes} episodes, {len(data['obs'])} transitions, {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
