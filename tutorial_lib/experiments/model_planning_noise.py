"""The model-planning comparison in a noisy maze: where does the one-step model stop being enough?

``model_planning`` compares, in D4RL's deterministic U-Maze, MPPI through a learned one-step model, MPPI
through the true equations and Diffuser. Here the maze gets *process noise*: each step adds a velocity kick
``sigma * N(0, I)`` (``PointMazeEnv(dynamics_noise=sigma)``; a full push changes the velocity by 0.238 m/s
per step, so ``sigma = 0.1`` is a strong disturbance). At each ``sigma`` of ``NOISE_SWEEP``:

* ``learned_mppi`` plans through a one-step MLP trained on the expert stream *recorded with that noise*
  (recipes ``motivation-dynamics-mlp-noise{1,3,10}``; at ``sigma = 0`` the shipped ``motivation-dynamics-mlp``);
  it learns the mean step, as regression does;
* ``true_mppi`` plans through the noise-free equations (the mean dynamics, exactly);
* ``diffuser`` is the shipped U-Maze Diffuser, trained on the noise-free stream (retraining it for each
  noise level would cost about an hour of CPU each; ``maze-umaze-diffuser``'s manifest entry).

Each MPPI plan is executed twice from the same noise draws: ``open_loop`` plays its controls (an action
sequence cannot react to a kick), ``tracked`` follows its predicted path on the plan's clock with Diffuser's
PD law (``PlanTracker``), which is how Diffuser's own state plans are executed. Comparing the two separates
the two causes of a plan-execution gap: noise (feedback removes it: a tracked plan of the true model stays
close) and a plan the maze cannot execute (feedback cannot: a learned model's plan through a wall stays
far). Pair ``k`` draws its kicks from ``seed + k`` for every method.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from ..envs.maze import DT
from ..envs.maze_expert import run_episode
from .maze_eval import ENV_IDS
from .model_planning import (HOLD, LAYOUT, LearnedModel, TrueModel, _gap, _stack, _sweep_entry, execute_controls,
                             open_loop_diffuser, plan_mppi)

__all__ = ["NOISE_SWEEP", "N_NOISE_PAIRS", "PlanTracker", "track_plan", "noise_episode", "noise_sweep",
           "noise_sweep_entry"]

NOISE_SWEEP = {0.0: "motivation-dynamics-mlp", 0.01: "motivation-dynamics-mlp-noise1",
               0.03: "motivation-dynamics-mlp-noise3", 0.1: "motivation-dynamics-mlp-noise10"}
"""Process-noise levels (std of the velocity kick, m/s per step) and the one-step model trained at each."""
_EPISODE_KEYS = ("return", "success", "gap_end", "gap_mean")
N_NOISE_PAIRS = 20
"""Pairs per noise level: the first 20 of the benchmark's 50 (learned MPPI costs 10-20 s per plan on a CPU)."""


class PlanTracker:
    """Follow planned positions ``p_hat_1 .. p_hat_H`` (one per environment step, ``(H, 2)``) on the plan's clock:
    ``a_t = clip(kp (p_hat_{t+1} - p_t) + kd (v_hat_{t+1} - v_t), -1, 1)`` with ``v_hat`` the plan's differences
    over ``DT``; past the plan's end it holds the last point (``v_hat = 0``). Diffuser's maze2d gains (1, 1)."""

    def __init__(self, start, positions, kp: float = 1.0, kd: float = 1.0):
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) < 1:
            raise ValueError(f"positions must be a planned path (H, 2) with H >= 1, got shape {positions.shape}")
        path = np.concatenate([np.asarray(start, dtype=np.float64).reshape(1, 2), positions])
        self.positions, self.velocities = positions, np.diff(path, axis=0) / DT
        self.kp, self.kd = float(kp), float(kd)
        self.reset()

    def reset(self) -> None:
        self.t = 0

    def __call__(self, obs, goal) -> np.ndarray:
        k = min(self.t, len(self.positions) - 1)
        v_hat = self.velocities[k] if self.t < len(self.positions) else np.zeros(2)
        self.t += 1
        obs = np.asarray(obs, dtype=np.float64)
        action = self.kp * (self.positions[k] - obs[:2]) + self.kd * (v_hat - obs[2:])
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def track_plan(start, goal, positions, dynamics_noise: float = 0.0, seed: int = 0) -> dict:
    """Execute ``positions: (H, 2)`` with ``PlanTracker`` for a whole episode from ``start`` (at rest).

    Returns ``{"positions": (H_episode, 2)`` after each step, ``"return"``, ``"steps_to_goal"}``."""
    env = gym.make(ENV_IDS[LAYOUT], dynamics_noise=dynamics_noise)
    states, total, first = run_episode(env, PlanTracker(start, positions), start, goal, seed=seed)
    env.close()
    return {"positions": states[1:, :2], "return": total, "steps_to_goal": first}


def noise_episode(model, start, goal, dynamics_noise: float, seed: int = 0, **budget) -> dict:
    """One MPPI plan through ``model`` (``budget``: ``n_iterations``, ``n_samples``), executed ``open_loop`` and
    ``tracked`` in the maze with process noise ``dynamics_noise`` (kicks from ``seed``, the same for both).

    Returns ``{"open_loop": {...}, "tracked": {...}}``, each with ``return``, ``success``, ``gap_end`` (at the
    plan's last step), ``gap_mean`` (along it), in cells."""
    controls, predicted = plan_mppi(model, np.r_[start, 0.0, 0.0], goal, seed, **budget)
    out = {}
    for name, run in (("open_loop", execute_controls(start, goal, controls, HOLD, LAYOUT, dynamics_noise, seed)),
                      ("tracked", track_plan(start, goal, predicted, dynamics_noise, seed))):
        end, mean = _gap(predicted, run["positions"], len(predicted))
        out[name] = {"return": run["return"], "success": run["steps_to_goal"] is not None,
                     "gap_end": end, "gap_mean": mean}
    return out


def noise_sweep(pairs, lo: float, hi: float, sweep: dict | None = None, seed: int = 0, log=print, device=None,
                models: dict | None = None, **budget) -> dict:
    """The ``noise_sweep`` entry of ``bench motivation``'s ``model_planning``: at each ``sigma`` of ``sweep``
    (default ``NOISE_SWEEP``), ``learned_mppi`` and ``true_mppi`` (each ``open_loop`` and ``tracked``) and the
    ``diffuser`` on ``pairs`` (``(n, 2, 2)``), with success (Wilson interval), normalized score (against the
    noise-free random and expert returns ``lo``, ``hi``) and the plan-execution gaps (t intervals).

    ``models``: ``{sigma: planning model}`` to use instead of loading ``sweep``'s recipes (tests); ``budget``:
    MPPI's ``n_iterations``, ``n_samples`` (default the benchmark's)."""
    sweep = NOISE_SWEEP if sweep is None else sweep
    true = TrueModel()
    out = {"sigma": [float(s) for s in sweep], "models": {f"{s:g}": recipe for s, recipe in sweep.items()},
           "n_pairs": len(pairs), "seed": seed, "by_sigma": {}}
    for sigma, recipe in sweep.items():
        t0 = time.perf_counter()
        learned = models[sigma] if models is not None else LearnedModel.from_recipe(recipe)
        entry = {}
        for name, model in (("learned_mppi", learned), ("true_mppi", true)):
            runs = [noise_episode(model, start, goal, sigma, seed + k, **budget)
                    for k, (start, goal) in enumerate(pairs)]
            entry[name] = {mode: _sweep_entry(_stack([r[mode] for r in runs], _EPISODE_KEYS), lo, hi)
                           for mode in ("open_loop", "tracked")}
        diffuser = open_loop_diffuser(pairs, seed=seed, device=device, dynamics_noise=sigma)
        entry["diffuser"] = _sweep_entry(diffuser, lo, hi)
        out["by_sigma"][f"{sigma:g}"] = entry
        log(f"  model planning, noise {sigma:g}: " + "; ".join(
            f"{name} {mode} success {e['success']} gap {e['gap_end']}"
            for name in ("learned_mppi", "true_mppi") for mode, e in entry[name].items())
            + f"; diffuser success {entry['diffuser']['success']} gap {entry['diffuser']['gap_end']}"
            + f" ({time.perf_counter() - t0:.0f} s)")
    return out


def noise_sweep_entry(n_pairs: int = N_NOISE_PAIRS, log=print, device=None) -> dict:
    """``noise_sweep`` on the first ``n_pairs`` of ``model_planning_bench``'s 50 pairs, normalized by the random and
    expert returns on those 50 (noise-free), as the rest of ``model_planning``; adds ``seconds``."""
    from ..envs.maze_expert import make_eval_pairs
    from .maze_eval import BENCH_SEED, evaluate_methods

    t0 = time.perf_counter()
    pairs = make_eval_pairs(LAYOUT, 50, seed=BENCH_SEED)
    refs = evaluate_methods(LAYOUT, pairs, methods=("random", "expert"))
    out = noise_sweep(pairs[:n_pairs], refs["random"].returns.mean(), refs["expert"].returns.mean(), log=log,
                      device=device)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
