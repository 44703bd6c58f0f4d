"""The maze benchmark of the Diffuser chapter: five planners on the same fixed start/goal pairs.

For each layout, every method runs one full episode (300 / 600 / 800 steps) per pair of
``make_eval_pairs(layout, n_pairs, seed=BENCH_SEED)``:

* ``random``: uniform actions, the normalized score's 0;
* ``expert``: the data's waypoint controller (grid shortest path + PD), the normalized score's 100;
* ``bc``: goal-conditioned behaviour cloning on the same data (``maze_bc``);
* ``mppi``: MPPI with the true dynamics and the task's sparse reward (``mppi``), the paper's baseline;
* ``diffuser``: the shipped Diffuser of the layout with the book's planner settings (``PLANNER``).

Each gets ``success`` (share of episodes that reach the goal's 0.5-disc), ``return`` (steps spent
there), ``normalized_score = 100 (R - R_random) / (R_expert - R_random)`` with the random and expert
returns of the *same* pairs, and ``steps_to_goal`` (mean over successes). ``plan_ms`` is the
median wall time of one Diffuser plan on the CPU (the sampler's whole reverse process) and
``forward_ms`` that of one network call with batch 1.

The planner's settings were chosen on other pairs (``VALIDATION_SEED``); the benchmark's pairs
were not used to choose anything.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..agents.diffuser_planner import DiffuserPlanner
from ..agents.diffuser import load_diffuser
from ..envs.maze_expert import (RandomPolicy, WaypointController, d4rl_normalized_score, evaluate_policy,
                                make_eval_pairs, make_single_task_starts, normalized_score, run_episode)
from ..core.stats import mean_ci95, wilson_ci95
from ..agents.trajectories import TRANSITION_DIM
from ..envs.maze_grid import MazeGrid, check_layout

__all__ = ["beyond_horizon", "ENV_IDS", "BENCH_SEED", "VALIDATION_SEED", "PLANNER", "make_planner", "rollout_episode", "plan_timing",
           "evaluate_methods", "maze_benchmark", "single_task_benchmark"]

ENV_IDS = {"umaze": "tutorial_lib/PointMaze-UMaze-v0", "medium": "tutorial_lib/PointMaze-Medium-v0",
           "large": "tutorial_lib/PointMaze-Large-v0"}
BENCH_SEED = 0
"""Seed of the benchmark's start/goal pairs."""
VALIDATION_SEED = 1
"""Seed of the pairs on which the planner's settings were chosen."""

PLANNER = dict(arrival="earliest", n_arrivals=16, n_samples=1, speed_slack=2.0, ddim_steps=16, kp=10.0, kd=1.0,
               tracking="progress", lookahead=32, replan_stalled=40)
"""The book's Diffuser planner settings (see ``DiffuserPlanner``): the earliest feasible arrival among
16 candidates, DDIM with 16 steps, the waypoint controller's PD gains, a reference 32 steps past
the plan point the ball has reached, and a new plan after 40 steps without progress.

Chosen on validation pairs (``VALIDATION_SEED``), never the benchmark's. First on U-Maze (20 pairs,
the final model): normalized score 81.6 with Diffuser's arrival at the end (DDPM, kp 10, lookahead
1); with DDPM, 101.9 with 8 candidates and lookahead 8, and 101.3 / 102.5 / 103.6 with 16
candidates and lookahead 4 / 8 / 12; 102.3 with DDIM 16 or 8 steps instead of DDPM's 64, at a
quarter of the cost. Then the tracking, on 50 pairs per maze (U-Maze; Medium with the 90k-step
model): by the plan's clock with lookahead 8, normalized 102.1 / 96.3 (success 1.00 / 0.96); by
progress with lookahead 16 and replans after 40 stalled steps, 106.2 / 104.2; lookahead 24,
108.4 / 108.9; 32, 109.7 / 109.8 (success unchanged); 40 on Medium, 109.6."""

METHODS = ("random", "expert", "bc", "mppi", "diffuser")


def make_planner(layout: str, device=None, seed: int = 0, **overrides) -> DiffuserPlanner:
    """The shipped Diffuser of ``layout`` wrapped in a planner with ``PLANNER`` settings (``overrides`` win)."""
    model, diffusion, normalizer, cfg = load_diffuser(f"maze-{check_layout(layout)}-diffuser", device=device)
    settings = {**PLANNER, **overrides}
    return DiffuserPlanner(model, diffusion, normalizer, horizon=cfg.horizon, stride=cfg.stride, seed=seed,
                           device=device, **settings)


def rollout_episode(layout: str, policy, start, goal, seed: int = 0) -> dict:
    """One episode from ``start`` to ``goal`` (as ``evaluate_policy`` runs it), recording the states.

    Returns ``{"states": (T + 1, 4), "return": float, "steps_to_goal": int or None}``.
    """
    import gymnasium as gym

    env = gym.make(ENV_IDS[check_layout(layout)])
    states, total, first = run_episode(env, policy, start, goal, seed=seed)
    env.close()
    return {"states": states, "return": total, "steps_to_goal": first}


def plan_timing(planner: DiffuserPlanner, pairs, repeats: int = 1) -> dict:
    """Median wall time of one plan (``plan_ms``) and one batch-1 network call (``forward_ms``) in ms.

    Plans from each pair's start (at rest) to its goal; the network call is on a ``(1, H, 6)`` input
    (``(1, H, 10)`` with the mask channels).
    """
    times = []
    for _ in range(repeats):
        for start, goal in np.asarray(pairs):
            t0 = time.perf_counter()
            planner.plan(np.concatenate([start, [0.0, 0.0]]), goal)
            times.append(time.perf_counter() - t0)
    width = TRANSITION_DIM + getattr(planner.model, "mask_dim", 0)   # the trajectory, and the mask if the net takes one
    x = torch.zeros(1, planner.horizon, width, device=planner.device)
    t = torch.zeros(1, dtype=torch.long, device=planner.device)
    fwd = []
    with torch.no_grad():
        for _ in range(30):
            t0 = time.perf_counter()
            planner.model(x, t)
            fwd.append(time.perf_counter() - t0)
    return {"plan_ms": 1000 * float(np.median(times)), "forward_ms": 1000 * float(np.median(fwd[5:]))}


def _policy(method: str, layout: str, device=None, mppi_kwargs: dict | None = None):
    if method == "random":
        return RandomPolicy(seed=0)
    if method == "expert":
        return WaypointController(MazeGrid.from_layout(layout), seed=0)
    if method == "bc":
        from ..agents.maze_bc import load_maze_bc

        return load_maze_bc(layout, device=device)
    if method == "mppi":
        from ..agents.mppi import MPPIPlanner

        return MPPIPlanner(layout, seed=0, **(mppi_kwargs or {}))
    if method == "diffuser":
        return make_planner(layout, device=device)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def evaluate_methods(layout: str, pairs, methods=METHODS, device=None, mppi_kwargs: dict | None = None,
                     log=None) -> dict:
    """``{method: EvalResult}`` for each method on ``pairs`` (``(n, 2, 2)`` from ``make_eval_pairs``)."""
    results = {}
    for method in methods:
        t0 = time.perf_counter()
        results[method] = evaluate_policy(ENV_IDS[layout], _policy(method, layout, device, mppi_kwargs), pairs)
        if log is not None:
            log(f"  {layout} {method}: {results[method].summary()} ({time.perf_counter() - t0:.0f} s)")
    return results


def summarize(results: dict) -> dict:
    """Per method: ``success``, ``return``, ``normalized_score``, ``steps_to_goal`` (4 decimals).

    Needs ``random`` and ``expert`` among the results (the normalized score's references).
    """
    lo, hi = results["random"].returns.mean(), results["expert"].returns.mean()
    return {method: _entry(r, normalized_score(r.returns, lo, hi)) for method, r in results.items()}


def _entry(r, scores: np.ndarray, key: str = "normalized_score") -> dict:
    """One method's JSON entry: success, return, the score (``key``), steps to the goal, with
    95 % intervals (Wilson for the success rate, t for the mean score) and the episode count."""
    s = r.summary()
    score, half = mean_ci95(scores)
    low, high = wilson_ci95(int(r.success.sum()), len(r.success))
    return {"success": round(s["success_rate"], 4), "return": round(s["return"], 2), key: round(score, 1),
            "steps_to_goal": round(s["steps_to_goal"], 1), "n_episodes": len(r.success),
            "ci95": {"success": [round(low, 4), round(high, 4)], key: round(half, 1)}}


SINGLE_TASK_METHODS = ("expert", "diffuser")


def single_task_benchmark(layout: str, n_episodes: int = 100, methods=SINGLE_TASK_METHODS, device=None,
                          log=None) -> dict:
    """D4RL's single-task protocol (the papers' Table 1 rows): the fixed goal ``G``, random starts
    with small random velocities (``make_single_task_starts``), one episode of 300 / 600 / 800 steps
    each, and D4RL's normalized score with its reference returns (``d4rl_normalized_score``).

    Per method: ``success``, ``return``, ``d4rl_normalized_score``, ``steps_to_goal``, ``n_episodes``
    and ``ci95``. Diffuser's paper reports 113.9 / 121.5 / 123.0 on this protocol (U-Maze / Medium /
    Large); our starts and ``G`` are D4RL's, our simulator is the rebuilt point mass of ``envs.maze``.
    """
    pairs, velocities = make_single_task_starts(layout, n_episodes, seed=BENCH_SEED)
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        r = evaluate_policy(ENV_IDS[layout], _policy(method, layout, device), pairs, velocities=velocities)
        out[method] = _entry(r, d4rl_normalized_score(layout, r.returns), key="d4rl_normalized_score")
        if log is not None:
            log(f"  {layout} single task {method}: {out[method]} ({time.perf_counter() - t0:.0f} s)")
    return out


def beyond_horizon(results: dict, span: int) -> dict:
    """The pairs whose goal lies beyond one plan: the expert needed more than ``span`` steps
    (a plan's ``horizon * stride``).

    ``{"plan_steps": span, "n_pairs", "expert_steps", "diffuser_success", "diffuser_steps"}``
    (mean steps to the goal over those pairs; the Diffuser's over its successes).
    """
    far = results["expert"].steps_to_goal > span
    d = results["diffuser"]
    reached = far & d.success
    return {"plan_steps": span, "n_pairs": int(far.sum()),
            "expert_steps": round(float(results["expert"].steps_to_goal[far].mean()), 1) if far.any() else None,
            "diffuser_success": round(float(d.success[far].mean()), 4) if far.any() else None,
            "diffuser_steps": round(float(d.steps_to_goal[reached].mean()), 1) if reached.any() else None}


def maze_benchmark(layout: str, n_pairs: int = 100, device=None, mppi_kwargs: dict | None = None,
                   timing_pairs: int = 20, log=None) -> dict:
    """The benchmark's entry for one layout: ``summarize`` of every method, ``plan_ms``, ``forward_ms``,
    ``diffuser_failed_pairs`` (the indices of the pairs the Diffuser did not reach) and
    ``beyond_horizon`` (how it fares on goals farther than one plan)."""
    pairs = make_eval_pairs(layout, n_pairs, seed=BENCH_SEED)
    results = evaluate_methods(layout, pairs, device=device, mppi_kwargs=mppi_kwargs, log=log)
    out = summarize(results)
    out["diffuser_failed_pairs"] = np.flatnonzero(~results["diffuser"].success).tolist()
    planner = make_planner(layout, device=device)
    out["beyond_horizon"] = beyond_horizon(results, planner.horizon * planner.stride)
    out.update({k: round(v, 2) for k, v in plan_timing(planner, pairs[:timing_pairs]).items()})
    out["n_pairs"] = n_pairs
    out["single_task"] = single_task_benchmark(layout, n_episodes=n_pairs, device=device, log=log)
    return out
