"""How smooth is the executed motion? Behaviour cloning against a diffusion policy executing 1, 4 or 8 actions
per chunk (Chapter 2, the outline's "smooth" point).

A policy's *commanded position* ``p_t`` is what it tells the robot to be at: in Push-T the action itself (the
agent's target, pixels), in the obstacle task the state after the displacement it chose. Over the executed steps
of an episode,

    jerk       = mean_t || p_{t+3} - 3 p_{t+2} + 3 p_{t+1} - p_t ||^2        (third difference, units^2 per step^6)
    reversals  = 100 #{t : (p_{t+1} - p_t) . (p_t - p_{t-1}) < 0, both steps longer than ``min_step``} / L

per episode (reversals per 100 steps, since episodes that succeed end early), then averaged over episodes
with a 95 % t interval. A chunked policy commits to a short smooth sequence; a policy that re-decides at
every step may switch between modes of the action distribution from one step to the next (Chi et al. 2023,
§3.2: temporal action consistency), which shows up as jerk and reversals.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..core.stats import mean_ci95

__all__ = ["PUSHT_ACTION_STEPS", "motion_stats", "episode_stats", "pusht_smoothness", "obstacle_smoothness",
           "demonstration_smoothness"]

MIN_STEP = {"pusht": 1.0, "obstacle": 1e-3}
"""Steps shorter than this (pixels / task units) count as standing still, not as a direction."""


def motion_stats(commanded: np.ndarray, min_step: float) -> tuple[float, float]:
    """``(mean squared third difference, direction reversals per 100 steps)`` of one ``(L, 2)`` commanded path.

    Paths shorter than 4 points have no third difference: the jerk is NaN (left out of the averages).
    """
    p = np.asarray(commanded, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"commanded must have shape (L, 2), got {p.shape}")
    jerk = float(np.mean(np.sum(np.diff(p, n=3, axis=0) ** 2, axis=1))) if len(p) >= 4 else float("nan")
    step = np.diff(p, axis=0)
    moving = np.linalg.norm(step, axis=1) > min_step
    turns = np.sum(step[1:] * step[:-1], axis=1) < 0
    return jerk, 100.0 * int(np.sum(turns & moving[1:] & moving[:-1])) / max(len(step), 1)


def episode_stats(paths, min_step: float) -> dict:
    """``jerk`` and ``reversals`` (per 100 steps) averaged over episodes (each a ``(L_i, 2)`` path), with 95 % t half-widths."""
    stats = [motion_stats(p, min_step) for p in paths]
    jerk = np.array([s[0] for s in stats])
    jerk = jerk[np.isfinite(jerk)]
    rev = np.array([s[1] for s in stats], dtype=np.float64)
    out = {"jerk": mean_ci95(jerk)[0], "reversals": mean_ci95(rev)[0], "n_episodes": len(stats),
           "ci95": {"jerk": mean_ci95(jerk)[1], "reversals": mean_ci95(rev)[1]}}
    return out


def demonstration_smoothness(task: str) -> dict:
    """The same statistics for the demonstrations the policies learned from (the reference): the scripted
    Push-T expert's successful episodes in ``data/pusht/demos.npz`` (its commanded targets), or the obstacle
    task's 50 expert paths (``motivation-bc``'s data)."""
    if task == "pusht":
        from ..core.assets import verify_file
        from ..envs.pusht_demos import load_demonstrations

        d = load_demonstrations(str(verify_file("pusht/demos.npz")))
        ends = np.r_[0, d["episode_ends"]]
        paths = [d["actions"][a:b] for a, b, ok in zip(ends[:-1], ends[1:], d["episode_success"]) if ok]
    elif task == "obstacle":
        from ..envs.obstacle2d import expert_demonstrations

        paths = [p.numpy() for p in expert_demonstrations(50, seed=0)["states"]]
    else:
        raise ValueError(f"task must be 'pusht' or 'obstacle', got {task!r}")
    return episode_stats(paths, MIN_STEP[task])


PUSHT_ACTION_STEPS = (1, 2, 4, 8, 15)
"""Actions executed per Push-T chunk in the full benchmark: from re-sampling every step to the whole chunk after
the current observation (15 of its 16 actions; the first is the previous step's)."""


def pusht_smoothness(seeds, action_steps=(1, 4, 8), device="cpu") -> dict:
    """Push-T, the shipped policies on the reset ``seeds``: ``bc`` (its chunk of 8) and ``dp_K`` for each K in
    ``action_steps`` (the shipped diffusion policy executing K actions of each chunk). Each entry has
    ``jerk`` (px^2), ``reversals`` (per 100 steps), ``mean_max_coverage``, ``n_episodes`` and ``ci95``."""
    from ..agents.pusht_policy import load_policy
    from ..agents.pusht_rollout import evaluate

    runs = {"bc": (load_policy("pusht-bc", device=device), None)}
    for k in action_steps:
        runs[f"dp_{k}"] = (load_policy("pusht-diffusion-policy", device=device), k)
    out = {}
    for name, (policy, k) in runs.items():
        if k is not None:
            policy.cfg = dataclasses.replace(policy.cfg, n_action_steps=k)
        ev = evaluate(policy, seeds, n_timing=1, record_actions=True)
        entry = episode_stats(ev["actions"], MIN_STEP["pusht"])
        entry["mean_max_coverage"] = ev["mean_max_coverage"]
        entry["ci95"]["mean_max_coverage"] = ev["ci95"]["mean_max_coverage"]
        entry["n_action_steps"] = policy.cfg.n_action_steps
        out[name] = entry
    return out


def obstacle_smoothness(n_eval: int = 100, eval_seed: int = 1, action_steps=(1, 4, 8)) -> dict:
    """The obstacle task, the shipped ``motivation-bc`` and ``motivation-diffusion-policy`` from ``n_eval`` fixed
    starts: ``bc`` (executing its whole chunk) and ``dp_K``; ``jerk`` and ``reversals`` of the path up to the
    episode's end, and ``success``."""
    from ..core.recipes import load_recipe_model
    from ..envs.obstacle2d import ObstacleTask, rollout, sample_start_states
    from .imitation import DiffusionPolicy

    task = ObstacleTask()
    starts = sample_start_states(n_eval, seed=eval_seed, task=task)
    bc, _, bc_cfg = load_recipe_model("motivation-bc")
    net, _, cfg = load_recipe_model("motivation-diffusion-policy")
    runs = {"bc": (lambda s: bc(s), bc_cfg.n_action_steps)}
    policy = DiffusionPolicy(net, cfg, task.max_step, generator=torch.Generator().manual_seed(eval_seed))
    for k in action_steps:
        runs[f"dp_{k}"] = (policy, k)
    out = {}
    for name, (pi, k) in runs.items():
        if pi is policy:
            policy.generator.manual_seed(eval_seed)
        r = rollout(pi, starts, task, k)
        paths = [r["paths"][b, : int(r["steps"][b]) + 1].numpy() for b in range(n_eval)]
        entry = episode_stats(paths, MIN_STEP["obstacle"])
        entry["success"] = r["success"].float().mean().item()
        entry["n_action_steps"] = k
        out[name] = entry
    return out
