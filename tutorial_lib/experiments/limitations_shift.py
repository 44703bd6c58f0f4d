"""Shifting distributions, measured: how fast each policy adapts when the task moves (Part 5).

The protocol of ``bench limitations`` (key ``shift``). The methods and the shifted task are in
:mod:`~tutorial_lib.experiments.online_finetuning`: reward-filtered self-imitation of the
diffusion policy, PPO of a Gaussian MLP policy, and PPO of the initial noise of the frozen
diffusion policy (noise-space steering, DSRL's idea).

- **Tuning** (:func:`tune`): each method's free settings are chosen on a tuning seed and
  tuning starts (``TUNE_SEED``, evaluation seed ``TUNE_EVAL_SEED``), never on the reported ones:
  the fewest episodes to the target wins (ties: the first in :data:`GRIDS`). ``ShiftConfig``'s
  defaults are the settings this picked.
- **Runs** (:func:`shift_experiment`): every method on 5 seeds with the chosen settings, each
  with the same budget of episodes, stopping at the first evaluation at or above the target.
  ``episodes_to_90`` is the number of training episodes after which the evaluation success
  first reached 0.9 (the new task's best is 1.0); the seconds count the rounds' roll-outs and
  gradient steps, on one CPU thread, not the evaluations.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from ..core.stats import mean_ci95
from ..envs.obstacle2d import ObstacleTask
from .online_finetuning import ShiftConfig, ppo_run, self_imitation_run

__all__ = ["METHODS", "GRIDS", "TUNE_SEED", "TUNE_EVAL_SEED", "first_reaching", "run_method", "summarize_runs",
           "tune", "shift_experiment", "bench"]

TUNE_SEED, TUNE_EVAL_SEED = 99, 3
GRIDS = {
    "diffusion": [dict(keep_fraction=k, buffer_rounds=b, dp_lr=lr) for k in (0.05, 0.1, 0.2) for b in (1, 4)
                  for lr in (3e-4, 1e-3)],
    "gaussian": [dict(ppo_lr=lr) for lr in (3e-4, 1e-3, 3e-3, 1e-2)],
    "steered": [dict(steer_lr=lr) for lr in (3e-4, 1e-3, 3e-3, 1e-2)],
}
"""The settings tried per method on the tuning seed."""
METHODS = ("diffusion", "gaussian", "steered")
"""Self-imitation of the diffusion policy, PPO of the Gaussian policy, PPO of the noise of the frozen
diffusion policy."""


def first_reaching(curve: dict, target: float) -> int | None:
    """Index of the first evaluation of ``curve`` at or above ``target`` (None if none)."""
    return next((i for i, s in enumerate(curve["success"]) if s >= target), None)


def run_method(method: str, cfg: ShiftConfig, seed: int, log=None) -> dict:
    """One adaptation run of ``method`` (one of :data:`METHODS`) on the shifted task."""
    if method == "diffusion":
        return self_imitation_run(cfg, seed, log=log)
    if method in ("gaussian", "steered"):
        return ppo_run(cfg, seed, steer=method == "steered", log=log)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def summarize_runs(curves: list[dict], cfg: ShiftConfig) -> dict:
    """Episodes, gradient steps and seconds to the target over seeds, and the mean curve.

    ``episodes_to_90`` etc. are means over the seeds that reached the target within the budget
    (``n_reached`` of ``n_seeds``: read them together), with the half-width of their 95 % t
    interval; the per-seed lists hold ``None`` for a seed that did not reach it. ``final_success``:
    the last evaluation of each run (at the target, or at the budget), averaged over seeds.
    """
    hits = [first_reaching(c, cfg.target) for c in curves]
    out: dict = {"n_seeds": len(curves), "n_reached": sum(h is not None for h in hits), "budget": cfg.max_episodes}
    for key, field in (("episodes_to_90", "episodes"), ("grad_steps_to_90", "grad_steps"), ("seconds_to_90", "seconds")):
        per_seed = [None if h is None else c[field][h] for c, h in zip(curves, hits)]
        reached = [v for v in per_seed if v is not None]
        mean, half = mean_ci95(reached) if reached else (None, None)
        out[key] = None if mean is None else round(mean, 2)
        out[f"{key}_ci95"] = None if half is None else round(half, 2)
        out[f"{key}_per_seed"] = per_seed
    n_points = cfg.max_episodes // cfg.episodes_per_round + 1
    padded = [c["success"] + [c["success"][-1]] * (n_points - len(c["success"])) for c in curves]
    out["curve_episodes"] = [i * cfg.episodes_per_round for i in range(n_points)]
    out["curve_success_mean"] = [round(float(v), 4) for v in np.mean(padded, 0)]
    out["curve_success_per_seed"] = [[round(float(v), 4) for v in row] for row in padded]
    out["initial_success"] = round(float(np.mean([c["success"][0] for c in curves])), 4)
    out["final_success"] = round(float(np.mean([c["success"][-1] for c in curves])), 4)
    out["final_success_per_seed"] = [round(float(c["success"][-1]), 4) for c in curves]
    return out


def tune(budget: int = 2000, methods=tuple(GRIDS), log=None) -> dict:
    """Each method's :data:`GRIDS` on ``TUNE_SEED`` (evaluation starts ``TUNE_EVAL_SEED``).

    ``{method: {"tried": [{"settings", "episodes_to_90", "best_success"}], "chosen": settings}}``.
    """
    out = {}
    for method in methods:
        tried = []
        for settings in GRIDS[method]:
            cfg = ShiftConfig(max_episodes=budget, eval_seed=TUNE_EVAL_SEED, **settings)
            curve = run_method(method, cfg, TUNE_SEED)
            hit = first_reaching(curve, cfg.target)
            tried.append({"settings": settings, "episodes_to_90": None if hit is None else curve["episodes"][hit],
                          "best_success": round(max(curve["success"]), 4)})
            if log is not None:
                log(f"  tune {method} {tried[-1]}")
        ranked = sorted(tried, key=lambda t: budget + 1 if t["episodes_to_90"] is None else t["episodes_to_90"])
        out[method] = {"tried": tried, "chosen": ranked[0]["settings"]}
    return out


def shift_experiment(cfg: ShiftConfig = ShiftConfig(), seeds=(0, 1, 2, 3, 4), methods=METHODS, settings=None,
                     log=None) -> dict:
    """Every method on every seed; ``{method: summarize_runs(...)}`` plus the settings.

    ``settings`` maps a method to its config overrides (e.g. :func:`tune`'s choices); a run stops
    at the first evaluation at or above ``cfg.target`` (its curve then held at that value to the
    budget), or when the budget is spent.
    """
    out: dict = {"new_goal": list(cfg.new_goal), "old_goal": list(ObstacleTask().goal), "target": cfg.target,
                 "episodes_per_round": cfg.episodes_per_round, "n_eval": cfg.n_eval, "seeds": list(seeds)}
    for method in methods:
        run_cfg = replace(cfg, **(settings or {}).get(method, {}))
        t0 = time.perf_counter()
        curves = [run_method(method, run_cfg, s) for s in seeds]
        out[method] = summarize_runs(curves, run_cfg)
        out[method]["bench_seconds"] = round(time.perf_counter() - t0, 1)
        if log is not None:
            log(f"  shift {method}: {({k: v for k, v in out[method].items() if not k.startswith('curve')})}")
    return out


def bench(quick: bool = False, log=None) -> dict:
    """The ``shift`` key of ``bench limitations``: :func:`tune`, then :func:`shift_experiment` with
    the chosen settings on 5 seeds (quick: no tuning, seed 0, a budget of 400 episodes). ``defaults_are_tuned`` says whether ``ShiftConfig``'s defaults are the choice."""
    torch.set_num_threads(1)
    if quick:
        return shift_experiment(ShiftConfig(max_episodes=400), seeds=(0,), log=log)
    tuning = tune(log=log)
    chosen = {m: t["chosen"] for m, t in tuning.items()}
    out = shift_experiment(ShiftConfig(), settings=chosen, log=log)
    default = ShiftConfig()
    out["tuning"] = tuning
    out["defaults_are_tuned"] = all(getattr(default, k) == v for c in chosen.values() for k, v in c.items())
    return out
