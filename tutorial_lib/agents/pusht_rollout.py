"""Running a Push-T policy: one episode (``rollout``) or many in lockstep, scored (``evaluate``).

Both run the receding horizon of Diffusion Policy: every ``n_action_steps`` steps the policy sees
the last ``n_obs_steps`` observations and the env executes ``chunk[To-1 : To-1+Ta]``. The score of
an episode is its maximum coverage (the book's) or its maximum reward ``min(coverage / 0.95, 1)``
(the paper's), under the book's or the reference start distribution (``PushTEnv(reset_protocol)``).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..core.stats import mean_ci95, wilson_ci95
from ..envs.pusht import SUCCESS_THRESHOLD, PushTEnv
from .pusht_policy import _ChunkPolicy

__all__ = ["EVAL_SEEDS", "rollout", "evaluate"]

EVAL_SEEDS = tuple(range(50))   # reset seeds of the evaluation; demonstrations use seeds >= 10**6


def rollout(policy: _ChunkPolicy, seed: int, max_steps: int = 300, render: bool = False,
            record_chunks: bool = False, protocol: str = "book") -> dict:
    """Run ``policy`` in ``PushTEnv(obs_type="keypoints")`` from reset seed ``seed``, receding horizon.

    ``protocol``: the env's start distribution, ``"book"`` or ``"reference"`` (``PushTEnv``).

    Every ``n_action_steps`` steps the policy sees the last ``n_obs_steps`` observations (the
    first one repeated at the start) and the env executes ``chunk[To-1 : To-1+Ta]``.
    Returns ``max_coverage``, ``success`` (coverage > 0.95 reached), ``steps``, ``coverage`` (T,),
    ``block_poses`` (T+1, 3) from the start, ``chunk_seconds`` (wall time of each policy call) and,
    if asked, ``frames`` (T+1, S, S, 3) and ``chunks`` (the predicted chunks with the step each was
    made at).
    """
    cfg = policy.cfg
    env = PushTEnv(obs_type="keypoints", render_mode="rgb_array" if render else None, max_episode_steps=max_steps,
                   reset_protocol=protocol)
    obs, info = env.reset(seed=int(seed))
    history = deque([obs] * cfg.n_obs_steps, maxlen=cfg.n_obs_steps)
    queue: deque = deque()
    frames = [env.render()] if render else []
    coverage, chunk_seconds, chunks, poses = [], [], [], [env.block_pose]
    done, terminated = False, False
    while not done:
        if not queue:
            t0 = time.perf_counter()
            chunk = policy.predict_chunk(np.stack(history))
            chunk_seconds.append(time.perf_counter() - t0)
            if record_chunks:
                chunks.append((len(coverage), chunk))
            queue.extend(chunk[cfg.n_obs_steps - 1: cfg.n_obs_steps - 1 + cfg.n_action_steps])
        obs, _, terminated, truncated, info = env.step(np.clip(queue.popleft(), 0, 512))
        history.append(obs)
        coverage.append(info["coverage"])
        poses.append(env.block_pose)
        if render:
            frames.append(env.render())
        done = terminated or truncated
    out = {"max_coverage": float(max(coverage)), "success": bool(terminated), "steps": len(coverage),
           "coverage": np.array(coverage), "block_poses": np.array(poses),
           "chunk_seconds": np.array(chunk_seconds)}
    if render:
        out["frames"] = np.stack(frames)
    if record_chunks:
        out["chunks"] = chunks
    return out


def evaluate(policy: _ChunkPolicy, seeds=EVAL_SEEDS, max_steps: int = 300, n_timing: int = 20,
             protocol: str = "book", record_actions: bool = False) -> dict:
    """Roll out from every reset seed at once and score the episodes.

    The episodes run in lockstep and the policy is called once per decision point on the batch of
    all running episodes (same results as one episode at a time up to the sampler's noise, and
    many times faster). ``protocol``: the start distribution, ``"book"`` or ``"reference"``
    (``PushTEnv``). Returns

    - ``mean_max_coverage``: the best coverage of each episode, averaged (the book's score);
    - ``mean_max_reward``: the paper's score, the mean of max clip(coverage / 0.95, 0, 1);
    - ``success``: the share of episodes reaching coverage > 0.95;
    - ``n_episodes`` and ``ci95``: the half-widths of the two means' 95 % t intervals and the
      Wilson interval of the success rate (``stats``);
    - per episode: ``max_coverage``, ``max_reward``, ``steps`` and ``block_left`` (the block's
      centre left the 512 x 512 workspace: pushed through a wall);
    - ``chunk_ms``: the median wall time of one *single-episode* policy call (batch of 1), over
      the first ``n_timing`` start states;
    - with ``record_actions``, ``actions``: per episode the ``(steps, 2)`` actions executed (pixels).
    """
    cfg = policy.cfg
    seeds = [int(s) for s in seeds]
    envs = [PushTEnv(obs_type="keypoints", max_episode_steps=max_steps, reset_protocol=protocol) for _ in seeds]
    first = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
    histories = [deque([o] * cfg.n_obs_steps, maxlen=cfg.n_obs_steps) for o in first]
    queues = [deque() for _ in seeds]
    max_cov, steps = np.zeros(len(seeds)), np.zeros(len(seeds), int)
    success, block_left = np.zeros(len(seeds), bool), np.zeros(len(seeds), bool)
    executed = [[] for _ in seeds]
    active = list(range(len(seeds)))
    while active:
        need = [i for i in active if not queues[i]]
        if need:
            chunks = policy.predict_chunk(np.stack([np.stack(histories[i]) for i in need]))
            for i, chunk in zip(need, chunks):
                queues[i].extend(chunk[cfg.n_obs_steps - 1: cfg.n_obs_steps - 1 + cfg.n_action_steps])
        still = []
        for i in active:
            action = np.clip(queues[i].popleft(), 0, 512)
            obs, _, terminated, truncated, info = envs[i].step(action)
            executed[i].append(action)
            histories[i].append(obs)
            max_cov[i], steps[i] = max(max_cov[i], info["coverage"]), steps[i] + 1
            success[i] |= terminated
            pos = envs[i].block_pose[:2]
            block_left[i] |= bool((pos < 0).any() or (pos > 512).any())
            if not (terminated or truncated):
                still.append(i)
        active = still
    timings = []
    for o in first[:n_timing]:
        t0 = time.perf_counter()
        policy.predict_chunk(np.stack([o] * cfg.n_obs_steps))
        timings.append(time.perf_counter() - t0)
    max_reward = np.clip(max_cov / SUCCESS_THRESHOLD, 0.0, 1.0)
    cov_ci, rew_ci, succ_ci = mean_ci95(max_cov)[1], mean_ci95(max_reward)[1], wilson_ci95(int(success.sum()), len(seeds))
    out = {"mean_max_coverage": float(max_cov.mean()), "mean_max_reward": float(max_reward.mean()),
           "success": float(success.mean()), "n_episodes": len(seeds),
           "ci95": {"mean_max_coverage": cov_ci, "mean_max_reward": rew_ci, "success": list(succ_ci)},
           "max_coverage": max_cov, "max_reward": max_reward, "steps": steps, "block_left": block_left,
           "chunk_ms": float(1000 * np.median(timings))}
    if record_actions:
        out["actions"] = [np.array(a, dtype=np.float64).reshape(-1, 2) for a in executed]
    return out
