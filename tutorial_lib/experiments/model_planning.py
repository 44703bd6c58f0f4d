"""Planning through a learned one-step model vs the true model vs Diffuser (Chapter 2, non-autoregressive).

The compounding-error study (``compounding``) found that a one-step model of the maze's deterministic
dynamics, given the data's own actions, predicts better than a sequence model at every horizon. The
outline's claim is about *planning*: an optimizer that searches for actions through a learned model
finds the actions where the model is wrong in its favour (walls it lets the ball through, speeds it
over-predicts) and those errors compound along the plan; a sequence model samples plans that look
like the data. This module measures it on U-Maze, on the random start/goal pairs of the Diffuser
chapter (``make_eval_pairs``), with the data all three methods share (the U-Maze expert stream).

Plans. MPPI (``mbd.mppi_optimize``, the settings and budget of the Literature chapter's model-based
comparison: 20 iterations x 256 roll-outs, sigma 0.5, lambda 0.03) optimizes an open-loop sequence of
``T = 30`` knots, each held ``hold = 10`` steps (the 300-step episode), for the cost

    J(Y) = (1 / H) sum_t ||p_t - goal|| + ||p_H - goal|| + 0.02 (1 / T) sum_j ||Y_j||^2,

with the positions ``p_t`` rolled out by a *model* from the current state:

* ``true``: the simulator's own equations (``mppi.batched_point_mass_step``);
* ``learned``: the shipped one-step MLP of the compounding study, ``s_{t+1} = s_t + f_theta(s_t, a_t)``
  (``compounding.rollout_dynamics``), or one trained on 1 % or 10 % of the stream (the data sweep).

Diffuser plans with the shipped U-Maze model and the book's planner (``maze_eval.PLANNER``).

The plan-execution gap. A plan says where the ball will be; executing it in the environment says where
it is. Open loop (one plan, no feedback from a new plan): MPPI's controls are played as they are;
Diffuser's planned states are tracked on the plan's clock by the PD law (``tracking="time"``,
``lookahead=1``), the paper's execution, with no replanning. The gap is ``||p_hat_t - p_t||``, at the
plan's end (MPPI: step 300; Diffuser: the step at which the plan says it arrives) and averaged along
the plan. Closed loop, MPPI replans every ``REPLAN_EVERY`` steps from the observed state (warm-started
from its shifted plan, ``REPLAN_ITERATIONS`` iterations) and the gap is that of each plan's first
segment: where it said the ball would be ``REPLAN_EVERY`` steps later, and where it was.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

import tutorial_lib.envs  # noqa: F401  (registers the gymnasium ids)
from ..agents.mbd import mppi_optimize
from ..agents.mppi import _pad, rollout_positions
from ..agents.trajectories import ACTION_DIM, LimitsNormalizer
from ..core.stats import mean_ci95, wilson_ci95
from ..envs.maze import EPISODE_LENGTHS, GOAL_RADIUS
from ..envs.maze_expert import make_eval_pairs, normalized_score, run_episode
from ..envs.maze_grid import MazeGrid
from .compounding import rollout_dynamics
from .literature_model_based import BUDGET, MPPI
from .maze_eval import BENCH_SEED, ENV_IDS, evaluate_methods, make_planner

__all__ = ["LAYOUT", "KNOTS", "HOLD", "REPLAN_EVERY", "REPLAN_ITERATIONS", "DATA_SWEEP", "TrueModel", "LearnedModel",
           "plan_cost", "plan_mppi", "execute_controls", "ModelMPPIPolicy", "mppi_episode", "diffuser_planner",
           "diffuser_episode", "open_loop_mppi", "open_loop_diffuser",
           "closed_loop", "model_planning_bench"]

LAYOUT = "umaze"
KNOTS, HOLD = 30, 10
"""An MPPI plan: 30 knots held 10 steps each, the 300 steps of a U-Maze episode."""
REPLAN_EVERY, REPLAN_ITERATIONS = 50, 5
"""Closed loop: a new plan every 50 steps from the observed state, 5 warm-started MPPI iterations each."""
DATA_SWEEP = {"1%": "motivation-dynamics-mlp-10k", "10%": "motivation-dynamics-mlp-100k",
              "100%": "motivation-dynamics-mlp"}
"""The one-step models of the data sweep: the first 10k, 100k and all 1M transitions of the U-Maze stream."""


class TrueModel:
    """The simulator's equations as a planning model: ``rollout(state, controls) -> positions``."""

    name = "true"

    def __init__(self, layout: str = LAYOUT):
        self.walls = _pad(MazeGrid.from_layout(layout).walls)

    def rollout(self, state, controls, hold: int = HOLD) -> np.ndarray:
        """``state: (4,)`` ``(x, y, vx, vy)``, ``controls: (K, T, 2)`` each held ``hold`` steps
        -> positions ``p_1..p_H``: ``(K, T * hold, 2) float64``."""
        return rollout_positions(self.walls, state, controls, hold)


class LearnedModel:
    """A one-step model ``s_{t+1} = s_t + delta_scale * f_theta(s_t, a_t)`` (normalised coordinates) as a
    planning model. ``from_recipe`` loads one of the compounding study's checkpoints."""

    def __init__(self, net: torch.nn.Module, delta_scale: torch.Tensor, normalizer: LimitsNormalizer,
                 name: str = "learned"):
        self.net, self.delta_scale, self.name = net.eval(), torch.as_tensor(delta_scale, dtype=torch.float32), name
        self.actions = normalizer.sub(0, ACTION_DIM)
        self.states = normalizer.sub(ACTION_DIM, normalizer.dim)

    @classmethod
    def from_recipe(cls, recipe: str = "motivation-dynamics-mlp", path=None) -> "LearnedModel":
        from ..core.recipes import load_recipe_model

        net, ckpt, _ = load_recipe_model(recipe, path=path, device="cpu")
        return cls(net, torch.tensor(ckpt["extra"]["delta_scale"]),
                   LimitsNormalizer.from_state_dict(ckpt["extra"]["normalizer"]), name=recipe)

    @torch.no_grad()
    def rollout(self, state, controls, hold: int = HOLD) -> np.ndarray:
        """As ``TrueModel.rollout``: ``(4,)``, ``(K, T, 2)`` -> ``(K, T * hold, 2) float64``."""
        u = torch.as_tensor(np.clip(np.asarray(controls, dtype=np.float32), -1.0, 1.0))
        a = self.actions.normalize(u).repeat_interleave(hold, dim=1)                       # (K, H, 2)
        s0 = self.states.normalize(torch.as_tensor(np.asarray(state, dtype=np.float32)))
        s = rollout_dynamics(self.net, self.delta_scale, s0.expand(len(u), -1), a)         # (K, H + 1, 4)
        return self.states.unnormalize(s[:, 1:]).numpy()[..., :2].astype(np.float64)


def plan_cost(path: np.ndarray, goal, controls, control_weight: float = 0.02,
              terminal_weight: float = 1.0) -> torch.Tensor:
    """``J`` of each plan (module docstring): ``path: (K, H, 2)``, ``goal: (2,)``, ``controls: (K, T, 2)`` -> ``(K,)``."""
    distance = np.sqrt(np.sum((path - np.asarray(goal, dtype=np.float64)) ** 2, axis=-1))   # (K, H)
    effort = np.sum(np.asarray(controls, dtype=np.float64) ** 2, axis=-1).mean(axis=1)
    return torch.as_tensor(distance.mean(axis=1) + terminal_weight * distance[:, -1] + control_weight * effort)


def plan_mppi(model, state, goal, seed: int, n_iterations: int | None = None, n_samples: int | None = None,
              init=None, knots: int = KNOTS) -> tuple[np.ndarray, np.ndarray]:
    """MPPI through ``model`` from ``state: (4,)`` to ``goal: (2,)``: ``(controls (T, 2), predicted positions (H, 2))``,
    the prediction being the planning model's own roll-out of the returned controls."""
    n_iterations = BUDGET["n_steps"] if n_iterations is None else n_iterations
    n_samples = BUDGET["n_samples"] if n_samples is None else n_samples

    def cost(controls):
        u = controls.numpy()
        return plan_cost(model.rollout(state, u), goal, u)

    result = mppi_optimize(cost, horizon=knots, action_dim=2, n_iterations=n_iterations, n_samples=n_samples,
                           init=init, generator=torch.Generator().manual_seed(seed), **MPPI)
    controls = result.controls.numpy()
    return controls, model.rollout(state, controls[None])[0]


def execute_controls(start, goal, controls, hold: int = HOLD, layout: str = LAYOUT, dynamics_noise: float = 0.0,
                     seed: int = 0) -> dict:
    """Play ``controls: (T, 2)`` open loop (each held ``hold`` steps, then zero) for a whole episode (in the maze
    with process noise ``dynamics_noise``, its kicks drawn from ``seed``).

    Returns ``{"positions": (H_episode, 2)`` after each step, ``"return"``, ``"steps_to_goal"``}.
    """
    controls = np.asarray(controls, dtype=np.float64)

    class _Playback:
        def reset(self):
            self.t = 0

        def __call__(self, obs, goal_):
            k = self.t // hold
            self.t += 1
            return controls[k] if k < len(controls) else np.zeros(2)

    env = gym.make(ENV_IDS[layout], dynamics_noise=dynamics_noise)
    states, total, first = run_episode(env, _Playback(), start, goal, seed=seed)
    env.close()
    return {"positions": states[1:, :2], "return": total, "steps_to_goal": first}


class ModelMPPIPolicy:
    """Closed-loop MPPI through ``model``: a policy ``action = policy(obs, goal)`` for ``evaluate_policy``.

    Every ``replan_every`` steps it plans from the observed state (the first plan with the full budget,
    later ones warm-started from the previous plan shifted by ``replan_every`` steps, with ``replan_iterations``
    iterations) and plays the plan's controls in between. ``gaps`` collects, for each plan after the first,
    ``||p_hat - p||`` between where the previous plan said the ball would be now and where it is.
    """

    def __init__(self, model, replan_every: int = REPLAN_EVERY, replan_iterations: int = REPLAN_ITERATIONS,
                 seed: int = 0):
        if int(replan_every) != replan_every or replan_every < 1:
            raise ValueError(f"replan_every must be an integer >= 1 (steps between plans), got {replan_every!r}")
        self.model, self.replan_every, self.replan_iterations, self.seed = model, replan_every, replan_iterations, seed
        self.gaps: list[float] = []
        self.episode = -1
        self.reset()

    def reset(self) -> None:
        self.t, self.offset, self.controls, self.predicted = 0, 0, None, None
        self.episode += 1

    def __call__(self, obs, goal) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if self.t % self.replan_every == 0:
            seed = 1_000_003 * self.seed + 1_009 * self.episode + self.t
            if self.controls is None:
                self.controls, self.predicted = plan_mppi(self.model, obs, goal, seed)
            else:
                elapsed = self.t - self.offset
                self.gaps.append(float(np.linalg.norm(self.predicted[elapsed - 1] - obs[:2])))
                # warm start: the old plan from now on, re-cut into knots of HOLD steps, zeros past its end
                held = np.repeat(self.controls, HOLD, axis=0)[elapsed:]
                held = np.concatenate([held, np.zeros((elapsed, 2))])
                self.controls, self.predicted = plan_mppi(self.model, obs, goal, seed,
                                                          n_iterations=self.replan_iterations, init=held[::HOLD])
            self.offset = self.t
        k = (self.t - self.offset) // HOLD
        self.t += 1
        # past the plan's last knot (replan_every longer than the plan) the plan says: stop pushing
        return self.controls[k].astype(np.float32) if k < len(self.controls) else np.zeros(2, np.float32)


def _gap(predicted: np.ndarray, positions: np.ndarray, end: int) -> tuple[float, float]:
    """``(gap at step end, mean gap over steps 1..end)`` of a plan's positions against the executed ones
    (both ``(n, 2)`` from step 1)."""
    err = np.linalg.norm(predicted[:end] - positions[:end], axis=-1)
    return float(err[-1]), float(err.mean())


def mppi_episode(model, start, goal, seed: int = 0, n_iterations: int | None = None,
                 n_samples: int | None = None) -> dict:
    """One MPPI plan through ``model`` from ``start`` (at rest) to ``goal``, executed open loop for an episode
    (``n_iterations`` x ``n_samples`` roll-outs; default the benchmark's budget).

    Returns ``predicted`` (the plan's positions after each step, ``(H, 2)``), ``executed`` (the environment's,
    ``(300, 2)``), ``return``, ``success``, ``gap_end``, ``gap_mean`` (cells) and ``plan_seconds``.
    """
    t0 = time.perf_counter()
    controls, predicted = plan_mppi(model, np.r_[start, 0.0, 0.0], goal, seed, n_iterations, n_samples)
    seconds = time.perf_counter() - t0
    run = execute_controls(start, goal, controls)
    end, mean = _gap(predicted, run["positions"], len(predicted))
    return {"predicted": predicted, "executed": run["positions"], "return": run["return"],
            "success": run["steps_to_goal"] is not None, "gap_end": end, "gap_mean": mean, "plan_seconds": seconds}


def diffuser_planner(seed: int = 0, device=None):
    """The shipped U-Maze Diffuser with the book's planner settings, except that it tracks its plan on the plan's
    clock (PD, lookahead 1) and never replans: open-loop execution of one plan."""
    return make_planner(LAYOUT, device=device, seed=seed, tracking="time", lookahead=1, replan_stalled=None)


def diffuser_episode(planner, env, start, goal, seed: int = 0) -> dict:
    """One open-loop Diffuser episode (``diffuser_planner``) in ``env``; the gap at the step the plan says it arrives
    and along the plan up to it. Keys as ``mppi_episode``; ``predicted`` and ``executed`` are the plan's points
    ``1..arrival`` and the ball's positions at the same steps."""
    t0 = time.perf_counter()   # run_episode resets the planner (its sampler restarts from its seed)
    states, total, first = run_episode(env, planner, start, goal, seed=seed)
    if planner.n_plans != 1:
        raise RuntimeError(f"the open-loop Diffuser made {planner.n_plans} plans; expected 1")
    plan = planner.plan_result
    arrival = int(plan.arrival[plan.chosen])
    steps = np.arange(1, arrival + 1) * planner.stride          # the env steps of plan points 1..arrival
    predicted, executed = plan.observations[plan.chosen, 1:arrival + 1, :2], states[steps, :2]
    end, mean = _gap(predicted, executed, len(steps))
    return {"predicted": predicted, "executed": executed, "return": total, "success": first is not None,
            "gap_end": end, "gap_mean": mean, "plan_seconds": time.perf_counter() - t0, "states": states}


_KEYS = ("return", "success", "gap_end", "gap_mean", "plan_seconds")


def _stack(runs: list[dict], keys=_KEYS) -> dict:
    """Per-episode results as arrays: ``{key: (n,)}`` for each of ``keys``."""
    return {key: np.asarray([r[key] for r in runs]) for key in keys}


def open_loop_mppi(model, pairs, seed: int = 0, **budget) -> dict:
    """``mppi_episode`` on every pair (seed ``seed + k`` for pair ``k``; ``budget``: its ``n_iterations``,
    ``n_samples``): per-pair arrays ``return``, ``success``, ``gap_end``, ``gap_mean`` (cells) and ``plan_seconds``."""
    runs = [mppi_episode(model, start, goal, seed + k, **budget) for k, (start, goal) in enumerate(pairs)]
    return _stack(runs)


def open_loop_diffuser(pairs, seed: int = 0, device=None, dynamics_noise: float = 0.0) -> dict:
    """``diffuser_episode`` on every pair; the same keys as ``open_loop_mppi`` (``plan_seconds``: the episode's).
    ``dynamics_noise``: executed in the maze with that process noise, pair ``k``'s kicks drawn from ``seed + k``."""
    planner = diffuser_planner(seed, device)
    env = gym.make(ENV_IDS[LAYOUT], dynamics_noise=dynamics_noise)
    runs = [diffuser_episode(planner, env, start, goal, seed=seed + k) for k, (start, goal) in enumerate(pairs)]
    env.close()
    return _stack(runs)


def closed_loop(model, pairs, seed: int = 0) -> dict:
    """Closed-loop MPPI through ``model`` (``ModelMPPIPolicy``): ``return``, ``success`` per pair and the
    first-segment ``gaps`` of every replan."""
    from ..envs.maze_expert import evaluate_policy

    policy = ModelMPPIPolicy(model, seed=seed)
    r = evaluate_policy(ENV_IDS[LAYOUT], policy, pairs)
    return {"return": r.returns, "success": r.success, "gaps": np.asarray(policy.gaps)}


def _summary(r: dict, lo: float, hi: float, gap_keys=("gap_end", "gap_mean")) -> dict:
    """Success (Wilson interval), normalized score (t interval) and the gaps (mean and t interval), rounded."""
    n = len(r["success"])
    low, high = wilson_ci95(int(np.sum(r["success"])), n)
    score, half = mean_ci95(normalized_score(r["return"], lo, hi))
    out = {"success": round(float(np.mean(r["success"])), 3), "normalized_score": round(score, 1), "n_episodes": n,
           "ci95": {"success": [round(low, 3), round(high, 3)], "normalized_score": round(half, 1)}}
    for key in gap_keys:
        if key in r and len(r[key]):
            mean, h = mean_ci95(r[key])
            out[key] = round(mean, 3)
            out["ci95"][key] = round(h, 3)
    return out


def _sweep_entry(r: dict, lo: float, hi: float) -> dict:
    """A sweep's row: success, normalized score, the gaps at the plan's end and along it, and their intervals."""
    e = _summary(r, lo, hi)
    return {key: e[key] for key in ("success", "normalized_score", "gap_end", "gap_mean", "ci95")}


def model_planning_bench(n_pairs: int = 50, n_closed: int = 20, quick: bool = False, log=print, device=None) -> dict:
    """The ``model_planning`` entry of ``bench motivation``.

    ``learned_mppi``, ``true_mppi``, ``diffuser``: open loop on ``n_pairs`` pairs (``success``,
    ``normalized_score``, ``plan_exec_gap`` at the plan's end and along it) and closed loop on the first
    ``n_closed`` (``success``, ``normalized_score``; MPPI's first-segment gap ``gap_segment``).
    ``data_sweep``: open-loop learned MPPI with the 1 %, 10 % and 100 % models (the last is ``learned_mppi``).
    ``quick``: 3 pairs, open loop only, a quarter of MPPI's budget (10 x 128), no sweep. Learned MPPI costs about
    10 s per plan at the full budget on one CPU thread (300 sequential MLP calls per roll-out batch, 21 batches).
    """
    t_start = time.perf_counter()
    n_pairs = 3 if quick else n_pairs
    pairs = make_eval_pairs(LAYOUT, n_pairs, seed=BENCH_SEED)
    refs = evaluate_methods(LAYOUT, pairs, methods=("random", "expert"))
    lo, hi = refs["random"].returns.mean(), refs["expert"].returns.mean()
    learned, true = LearnedModel.from_recipe(DATA_SWEEP["100%"]), TrueModel()
    out = {"layout": LAYOUT, "n_pairs": n_pairs, "knots": KNOTS, "hold": HOLD, "mppi": {**MPPI, **BUDGET},
           "replan_every": REPLAN_EVERY, "replan_iterations": REPLAN_ITERATIONS, "quick": quick}
    budget = dict(n_iterations=10, n_samples=128) if quick else {}
    if quick:
        out["mppi"] = {**MPPI, "n_steps": 10, "n_samples": 128}
    runs = {"learned_mppi": lambda: open_loop_mppi(learned, pairs, **budget),
            "true_mppi": lambda: open_loop_mppi(true, pairs, **budget),
            "diffuser": lambda: open_loop_diffuser(pairs, device=device)}
    raw = {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        raw[name] = r = run()
        entry = _summary(r, lo, hi)
        entry["plan_exec_gap"] = {"end": entry.pop("gap_end"), "mean": entry.pop("gap_mean"),
                                  "end_ci95": entry["ci95"].pop("gap_end"), "mean_ci95": entry["ci95"].pop("gap_mean")}
        entry["plan_seconds_median"] = round(float(np.median(r["plan_seconds"])), 3)
        out[name] = {"open_loop": entry}
        log(f"  model planning, {name} open loop: {entry} ({time.perf_counter() - t0:.0f} s)")
    if not quick:
        closed_pairs = pairs[:n_closed]
        c_refs = evaluate_methods(LAYOUT, closed_pairs, methods=("random", "expert", "diffuser"), device=device)
        c_lo, c_hi = c_refs["random"].returns.mean(), c_refs["expert"].returns.mean()
        for name, model in (("learned_mppi", learned), ("true_mppi", true)):
            t0 = time.perf_counter()
            r = closed_loop(model, closed_pairs)
            entry = _summary({"return": r["return"], "success": r["success"], "gap_segment": r["gaps"]}, c_lo, c_hi,
                             gap_keys=("gap_segment",))
            out[name]["closed_loop"] = entry
            log(f"  model planning, {name} closed loop: {entry} ({time.perf_counter() - t0:.0f} s)")
        d = c_refs["diffuser"]
        out["diffuser"]["closed_loop"] = _summary({"return": d.returns, "success": d.success}, c_lo, c_hi)
        sweep = {}
        for share, recipe in DATA_SWEEP.items():
            t0 = time.perf_counter()
            r = raw["learned_mppi"] if share == "100%" else open_loop_mppi(LearnedModel.from_recipe(recipe), pairs)
            sweep[share] = _sweep_entry(r, lo, hi)
            log(f"  model planning, data {share}: {sweep[share]} ({time.perf_counter() - t0:.0f} s)")
        out["data_sweep"] = {"transitions": {"1%": 10_000, "10%": 100_000, "100%": 1_000_000}, **sweep}
    d, m = out["diffuser"]["open_loop"], out["learned_mppi"]["open_loop"]
    out["gap_ratio_learned_vs_diffuser"] = round(m["plan_exec_gap"]["end"] / max(d["plan_exec_gap"]["end"], 1e-9), 2)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out
