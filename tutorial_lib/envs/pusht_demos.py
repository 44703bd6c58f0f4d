"""Push-T demonstrations from the scripted expert: generate, save, load, check.

A demonstration file is a ``.npz`` of plain arrays (load with ``allow_pickle=False``),
laid out like Diffusion Policy's replay buffer: all steps of all episodes concatenated,
and ``episode_ends`` the cumulative (exclusive) end index of each episode, so episode i is
``slice(episode_ends[i-1], episode_ends[i])`` (with episode_ends[-1] = 0).

    obs:                  (N, 5) float32  [agent_x, agent_y, block_x, block_y, block_angle]
                                          observed before the action
    actions:              (N, 2) float32  commanded agent target in [0, 512]^2
    coverage:             (N,)   float32  coverage after the action
    episode_ends:         (E,)   int64    cumulative end indices, episode_ends[-1] = N
    episode_success:      (E,)   bool     coverage > 0.95 reached
    episode_max_coverage: (E,)   float32
    episode_seeds:        (E,)   int64    env reset seeds (>= 10**6, so they never meet the
                                          evaluation seeds 0, 1, 2, ...)
    seed:                 ()     int64    the seed the whole set was derived from

All episodes are kept, failed ones included; filter with ``episode_success``.
Keypoint observations (N, 20) follow from ``obs`` with ``state_to_keypoints_obs``.

The task has one mirror symmetry (``mirror_states``, ``mirror_actions``): the goal T's axis
lies on the workspace's diagonal x + y = 512, so reflecting a whole episode across that
line gives another episode of the same task, which reaches the same coverage at every step.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from multiprocessing import Pool

import numpy as np

from tutorial_lib.envs.pusht import SUCCESS_THRESHOLD, WORKSPACE_SIZE, PushTEnv
from tutorial_lib.envs.pusht_expert import ExpertConfig, PushTExpert, run_expert_episode
from tutorial_lib.envs.pusht_geometry import block_keypoints

DEMO_KEYS = ("obs", "actions", "coverage", "episode_ends", "episode_success",
             "episode_max_coverage", "episode_seeds", "seed")


def episode_seeds(seed: int, n_episodes: int) -> np.ndarray:
    """Reset seeds of a demonstration set: n_episodes integers in [10**6, 2**31) drawn from
    ``np.random.default_rng(seed)`` -> (n_episodes,) int64."""
    return np.random.default_rng(seed).integers(10**6, 2**31, size=n_episodes)


def _run_one(args):
    env_seed, cfg = args
    return run_expert_episode(PushTEnv(), PushTExpert(cfg, seed=int(env_seed)), seed=int(env_seed))


def rollout_expert(seeds, cfg: ExpertConfig = ExpertConfig(), n_workers: int = 1) -> list:
    """Run the expert once per reset seed (expert noise seeded by the same number); the
    result does not depend on ``n_workers``. Returns a list of ``run_expert_episode`` dicts."""
    jobs = [(int(s), cfg) for s in seeds]
    if n_workers <= 1:
        return [_run_one(job) for job in jobs]
    with Pool(n_workers) as pool:
        return pool.map(_run_one, jobs, chunksize=1)


def pack_episodes(episodes: list, seeds, seed: int) -> dict:
    """Concatenate episode dicts into the arrays of a demonstration file (see module doc)."""
    lengths = [len(ep["actions"]) for ep in episodes]
    return {
        "obs": np.concatenate([ep["obs"] for ep in episodes]).astype(np.float32),
        "actions": np.concatenate([ep["actions"] for ep in episodes]).astype(np.float32),
        "coverage": np.concatenate([ep["coverage"] for ep in episodes]).astype(np.float32),
        "episode_ends": np.cumsum(lengths).astype(np.int64),
        "episode_success": np.array([ep["success"] for ep in episodes], dtype=bool),
        "episode_max_coverage": np.array([ep["max_coverage"] for ep in episodes], np.float32),
        "episode_seeds": np.asarray(seeds, dtype=np.int64),
        "seed": np.array(seed, dtype=np.int64),
    }


def check_demonstrations(data) -> None:
    """Raise ValueError naming the first broken invariant of a demonstration set.

    Checks: all keys present; obs (N, 5), actions (N, 2), coverage (N,); E episodes with
    0 < episode_ends[0] < ... < episode_ends[-1] = N; finite values; actions in [0, 512]^2;
    episode_success == (episode_max_coverage > 0.95) == max of coverage per episode > 0.95;
    a successful episode ends at its first step with coverage > 0.95.
    """
    missing = [k for k in DEMO_KEYS if k not in data]
    if missing:
        raise ValueError(f"demonstrations lack arrays {missing}; expected keys {list(DEMO_KEYS)}")
    obs, actions, cov, ends = (np.asarray(data[k]) for k in ("obs", "actions", "coverage",
                                                            "episode_ends"))
    n = len(obs)
    for name, arr, shape in (("obs", obs, (n, 5)), ("actions", actions, (n, 2)),
                             ("coverage", cov, (n,))):
        if arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}; expected {shape} (N = len(obs))")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds NaN or inf at rows "
                             f"{np.unique(np.nonzero(~np.isfinite(arr))[0])[:5].tolist()}")
    if ends.ndim != 1 or len(ends) == 0 or ends[0] <= 0 or np.any(np.diff(ends) <= 0) \
            or ends[-1] != n:
        raise ValueError(f"episode_ends must increase strictly from > 0 to N = {n}; "
                         f"got {ends[:3].tolist()} ... {ends[-3:].tolist()}")
    n_ep = len(ends)
    for key in ("episode_success", "episode_max_coverage", "episode_seeds"):
        if np.asarray(data[key]).shape != (n_ep,):
            raise ValueError(f"{key} has shape {np.asarray(data[key]).shape}; expected ({n_ep},)")
    if np.any(actions < 0) or np.any(actions > WORKSPACE_SIZE):
        raise ValueError(f"actions must lie in [0, {WORKSPACE_SIZE:g}]; got range "
                         f"[{actions.min():.1f}, {actions.max():.1f}]")
    starts = np.concatenate([[0], ends[:-1]])
    success = np.asarray(data["episode_success"])
    for i, (a, b) in enumerate(zip(starts, ends)):
        reached = np.nonzero(cov[a:b] > SUCCESS_THRESHOLD)[0]
        if bool(success[i]) != (len(reached) > 0) or \
                abs(float(data["episode_max_coverage"][i]) - float(cov[a:b].max())) > 1e-6:
            raise ValueError(f"episode {i}: episode_success / episode_max_coverage disagree "
                             f"with its per-step coverage (max {cov[a:b].max():.4f})")
        if len(reached) and reached[0] != b - a - 1:
            raise ValueError(f"episode {i} goes on after reaching coverage > 0.95 at step "
                             f"{reached[0]} of {b - a}; it should end there")


def save_demonstrations(path: str, data: dict) -> None:
    """Check ``data`` and write it as a compressed .npz of plain arrays."""
    check_demonstrations(data)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.savez_compressed(path, **data)


def load_demonstrations(path: str) -> dict:
    """Load and check a demonstration file -> dict of arrays (see module doc)."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    check_demonstrations(data)
    return data


def state_to_keypoints_obs(obs: np.ndarray) -> np.ndarray:
    """State observations (N, 5) -> keypoint observations (N, 20) float32, the layout of
    ``PushTEnv(obs_type="keypoints")``: 9 block keypoints (x, y), then agent (x, y)."""
    obs = np.asarray(obs, dtype=np.float64)
    kps = np.stack([block_keypoints(o[2:5]).ravel() for o in obs])
    return np.concatenate([kps, obs[:, :2]], axis=1).astype(np.float32)


def mirror_actions(actions: np.ndarray) -> np.ndarray:
    """Reflect agent targets across the goal's axis x + y = 512: (x, y) -> (512 - y, 512 - x).

    actions: (..., 2) -> (..., 2), same dtype; [0, 512]^2 maps onto itself.
    """
    actions = np.asarray(actions)
    return WORKSPACE_SIZE - actions[..., ::-1]


def mirror_states(obs: np.ndarray) -> np.ndarray:
    """Reflect state observations across the goal's axis x + y = 512.

    The T is symmetric about its body y axis, so the mirror image of a block at
    (x, y, theta) is the block at (512 - y, 512 - x, pi/2 - theta); the goal (256, 256, pi/4)
    is its own image and coverage is unchanged. Positions reflect like ``mirror_actions``.

    obs: (..., 5) [agent_x, agent_y, block_x, block_y, block_angle] -> (..., 5), same dtype,
    angle in [0, 2 pi).
    """
    obs = np.asarray(obs)
    if obs.shape[-1] != 5:
        raise ValueError(f"mirror_states takes state observations (..., 5); got shape {obs.shape}")
    out = np.empty_like(obs)
    out[..., 0:2] = mirror_actions(obs[..., 0:2])
    out[..., 2:4] = mirror_actions(obs[..., 2:4])
    out[..., 4] = np.mod(math.pi / 2 - obs[..., 4].astype(np.float64), 2 * math.pi)
    return out


def mirror_demonstrations(data: dict) -> dict:
    """The mirror image of every episode of a demonstration set (see ``mirror_states``).

    Same layout and per-step coverage; ``episode_seeds`` are kept (they name the episode
    that was reflected). The physics is symmetric too, apart from the walls' inner faces
    at 7 and 504, which are symmetric about 255.5 rather than 256: replaying the reflected
    actions from the reflected start reproduces the reflected states.
    """
    check_demonstrations(data)
    out = dict(data)
    out["obs"] = mirror_states(data["obs"]).astype(np.float32)
    out["actions"] = mirror_actions(data["actions"]).astype(np.float32)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate Push-T demonstrations with the "
                                     "scripted expert.")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/pusht/demos.npz")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluate", type=int, default=0, metavar="N",
                        help="only measure the expert on the evaluation seeds 0 .. N-1")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1; got {args.episodes}")
    t0 = time.time()
    if args.evaluate > 0:
        episodes = rollout_expert(range(args.evaluate), n_workers=args.workers)
        print(f"evaluation seeds 0..{args.evaluate - 1}: success rate "
              f"{np.mean([ep['success'] for ep in episodes]):.3f}, mean max coverage "
              f"{np.mean([ep['max_coverage'] for ep in episodes]):.3f}, mean length "
              f"{np.mean([len(ep['actions']) for ep in episodes]):.1f} steps, "
              f"{time.time() - t0:.0f} s")
        return
    seeds = episode_seeds(args.seed, args.episodes)
    episodes = rollout_expert(seeds, n_workers=args.workers)
    data = pack_episodes(episodes, seeds, args.seed)
    save_demonstrations(args.out, data)
    print(f"{args.episodes} episodes, {len(data['actions'])} steps, "
          f"success rate {data['episode_success'].mean():.3f}, "
          f"mean max coverage {data['episode_max_coverage'].mean():.3f}, "
          f"{time.time() - t0:.0f} s, {os.path.getsize(args.out) / 1e6:.2f} MB -> {args.out}")
