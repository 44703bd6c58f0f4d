"""The variance of diffusion planners and policies: how much an outcome depends on the sampler's noise.

A DDIM sampler with ``eta = 0`` (the book's maze planner and Push-T policy) is a deterministic map
``x_0 = F(x_T, conditions)``: every bit of randomness of a plan enters through its initial noise
``x_T ~ N(0, I)`` (and, for a planner that replans, through the ``x_T`` of each replan). Fixing the
start and goal and changing only the noise seed therefore measures the spread that the noise alone
causes. This module runs those sweeps and three remedies:

* ``single``: the book's planner as shipped (``maze_eval.PLANNER``: 16 arrival candidates in one
  batch, the earliest that passes the speed check is followed);
* ``temperature``: the same with ``x_T ~ N(0, tau^2 I)``, ``tau < 1`` (Consistency Policy's "reduced
  initial sample variance", Prasad et al. 2024);
* ``wall_check``: the same candidates, the earliest that passes the speed check *and* whose path up
  to its arrival stays out of the walls (``crosses_wall``; free: the candidates exist already);
* ``best_of_n``: ``n`` plans per arrival candidate (``n``x the network calls) and the same two checks.

A pair that fails for some noise seeds only is bad luck of the noise; one that fails for every
seed is systematic (``classify``). Push-T's spread is the per-start maximum coverage of the shipped
diffusion policy over episodes that differ only in the sampler's noise (``pusht_spread``).
The remedies' settings (``TEMPERATURE``, ``BEST_OF``) were set in advance, not tuned; ``bench`` runs on
``BENCH_PAIRS`` of the maze benchmark (12 typical pairs and the 4 its single run failed).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..agents.diffuser import load_diffuser, sample_plans
from ..agents.diffuser_planner import DiffuserPlanner, Plan
from ..agents.trajectories import TRANSITION_DIM
from ..core.stats import mean_ci95, wilson_ci95
from ..envs.maze_expert import make_eval_pairs
from ..envs.maze_grid import MazeGrid, check_layout
from .maze_eval import BENCH_SEED, ENV_IDS, PLANNER

__all__ = ["BENCH_PAIRS", "BENCHMARK_FAILURES", "TEMPERATURE", "BEST_OF", "NoisePlanner", "make_noise_planner", "crosses_wall", "reach_goal",
           "noise_sweep", "classify", "failure_summary", "pusht_spread", "bench"]

BENCHMARK_FAILURES = (19, 55, 58, 69)
"""The pairs of ``make_eval_pairs("medium", 100, seed=BENCH_SEED)`` (the maze benchmark's) on which the
shipped Diffuser failed in the book's benchmark run (``data/bench/maze.json``, ``diffuser_failed_pairs``)."""
BENCH_PAIRS = tuple(range(12)) + BENCHMARK_FAILURES
"""The pairs of the chapter's sweeps, indices into the benchmark's 100 Medium pairs: the first 12, which
stand for the typical pair, and the 4 the benchmark's single run failed: were those failures bad luck
of the noise, or systematic?"""
TEMPERATURE = 0.5
"""The initial-noise scale ``tau`` of the ``temperature`` remedy (set in advance, not tuned)."""
BEST_OF = 4
"""Plans per arrival candidate of the ``best_of_n`` remedy (set in advance, not tuned)."""


def crosses_wall(grid: MazeGrid, observations: np.ndarray, arrival, n_sub: int = 8) -> np.ndarray:
    """Whether each plan's path, up to its arrival, enters a wall cell: ``(B, H, >=2), (B,) -> (B,) bool``.

    The segment between consecutive plan points ``p_i, p_{i+1}`` (``i < arrival``) is checked at
    ``n_sub`` points ``p_i + (k / n_sub) (p_{i+1} - p_i)``; a point strictly inside a wall square
    (``MazeGrid.is_free`` with radius 0) counts: a jump through a wall, a corner cut, or a diagonal
    step between two free cells that touch only at a corner (it clips one of the two wall cells,
    unless it runs exactly through the corner point, which sampled plans never do).
    """
    obs = np.asarray(observations, dtype=np.float64)
    if obs.ndim != 3 or obs.shape[-1] < 2:
        raise ValueError(f"observations must have shape (B, H, >= 2) with (x, y) first, got {obs.shape}")
    arrival = np.broadcast_to(np.asarray(arrival), (obs.shape[0],))
    if n_sub < 1:
        raise ValueError(f"n_sub (points per segment) must be >= 1, got {n_sub}")
    p = obs[..., :2]
    frac = np.arange(n_sub + 1)[:, None] / n_sub                                  # (n_sub + 1, 1)
    pts = p[:, :-1, None] + frac * (p[:, 1:, None] - p[:, :-1, None])          # (B, H - 1, n_sub + 1, 2)
    hit = ~grid.is_free(pts)                                                      # (B, H - 1, n_sub + 1)
    before = np.arange(obs.shape[1] - 1)[None, :] < arrival[:, None]              # (B, H - 1)
    return (hit.any(-1) & before).any(-1)


class NoisePlanner(DiffuserPlanner):
    """``DiffuserPlanner`` with a scaled initial noise and an optional wall check on its candidates.

    ``plan`` draws ``x_T = tau * z``, ``z ~ N(0, I)`` from the planner's generator (``temperature=1``
    gives exactly the shipped planner's plans), runs the same DDIM sampler and chooses, among the
    ``n_arrivals * n_samples`` candidates, the earliest arrival that passes the speed check
    (``feasible``) and, with ``wall_check``, ``crosses_wall``; with no such candidate it falls back on
    the speed check alone, then on the last candidate. ``grid``: the maze (needed by ``wall_check``).
    """

    def __init__(self, *args, temperature: float = 1.0, wall_check: bool = False, grid: MazeGrid | None = None,
                 **kwargs):
        if not float(temperature) > 0:
            raise ValueError(f"temperature (the initial noise's standard deviation) must be > 0, got {temperature}")
        if wall_check and grid is None:
            raise ValueError("wall_check=True needs grid, the MazeGrid of the layout (MazeGrid.from_layout(layout))")
        if kwargs.get("arrival", "end") != "earliest" and wall_check:
            raise ValueError("wall_check chooses among arrival candidates: it needs arrival='earliest'")
        super().__init__(*args, **kwargs)
        self.temperature, self.wall_check, self.grid = float(temperature), bool(wall_check), grid

    def initial_noise(self, shape: tuple) -> torch.Tensor:
        """``x_T = tau * z``, ``z ~ N(0, I)`` of ``shape = (B, H, 6)``, from the planner's generator."""
        return self.temperature * torch.randn(shape, generator=self.generator, device=self.device)

    def plan(self, state, goal, horizon: int | None = None, via: dict | None = None) -> Plan:
        """As ``DiffuserPlanner.plan``, with ``x_T ~ N(0, tau^2 I)`` and the wall check (see the class)."""
        horizon = self.horizon if horizon is None else int(horizon)
        conditions, arrival, B = self._conditions(*self._request(state, goal), horizon,
                                                  self.via if via is None else via)
        shape = (B, horizon, TRANSITION_DIM)
        x = sample_plans(self.model, self.diffusion, conditions, shape, ddim_steps=self.ddim_steps,
                         generator=self.generator, x_start=self.initial_noise(shape))
        self.denoiser_evals += B * (self.ddim_steps or self.diffusion.n_diffusion_steps)
        plan = self._to_plan(x, arrival)
        if self.wall_check:
            fast_ok = self.feasible(plan.observations, arrival)
            ok = np.flatnonzero(fast_ok & ~crosses_wall(self.grid, plan.observations, arrival))
            plan.chosen = int(ok[0]) if len(ok) else plan.chosen
        return plan


def make_noise_planner(layout: str = "medium", seed: int = 0, temperature: float = 1.0, best_of: int = 1,
                       wall_check: bool = False, device=None, loaded=None) -> NoisePlanner:
    """The shipped Diffuser of ``layout`` with the book's ``PLANNER`` settings, as a ``NoisePlanner``.

    ``best_of``: plans per arrival candidate (``n_samples``; ``best_of`` times the network calls).
    ``loaded``: a ``load_diffuser`` result to reuse (``(model, diffusion, normalizer, cfg)``).
    """
    if int(best_of) < 1:
        raise ValueError(f"best_of (plans per arrival candidate) must be >= 1, got {best_of}")
    model, diffusion, normalizer, cfg = loaded or load_diffuser(f"maze-{check_layout(layout)}-diffuser", device=device)
    settings = {**PLANNER, "n_samples": int(best_of)}
    return NoisePlanner(model, diffusion, normalizer, horizon=cfg.horizon, stride=cfg.stride, seed=seed,
                        device=device, temperature=temperature, wall_check=wall_check,
                        grid=MazeGrid.from_layout(layout), **settings)


def reach_goal(env, policy, start, goal, seed: int = 0, max_steps: int | None = None) -> dict:
    """One episode from ``start`` (at rest) towards ``goal``, stopped when the ball first enters the goal disc.

    ``policy.reset()`` first. Returns ``{"success": bool, "steps": int (steps to the goal, or the steps
    run), "n_plans": int (plans made, if the policy counts them)}``. The reward is 1 in the goal disc,
    so the first rewarded step is the arrival (``maze_expert.run_episode`` without the rest).
    """
    obs, info = env.reset(seed=seed, options={"start": np.asarray(start), "goal": np.asarray(goal)})
    if hasattr(policy, "reset"):
        policy.reset()
    limit = env.unwrapped.max_episode_steps if max_steps is None else int(max_steps)
    for t in range(1, limit + 1):
        obs, reward, terminated, truncated, info = env.step(policy(obs, info["goal"]))
        if reward > 0:
            return {"success": True, "steps": t, "n_plans": getattr(policy, "n_plans", 0)}
        if terminated or truncated:
            break
    return {"success": False, "steps": t, "n_plans": getattr(policy, "n_plans", 0)}


def noise_sweep(planner: NoisePlanner, pairs, noise_seeds, layout: str = "medium", max_steps: int | None = None,
                log=None) -> dict:
    """Run every (start, goal) pair once per noise seed: the planner's generator is reseeded with each.

    ``pairs: (P, 2, 2)``, ``noise_seeds: (S,)``; ``max_steps`` (default: the episode's length) ends an
    episode that has not arrived. Returns ``success: (P, S) bool``, ``steps: (P, S)``
    (steps to the goal, NaN on failures), ``n_plans: (P, S)``, ``denoiser_evals`` (network calls per
    sample of a batch, summed), ``seconds``.
    """
    import gymnasium as gym

    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, 2):
        raise ValueError(f"pairs must have shape (P, 2, 2) = (start, goal) x (x, y), got {pairs.shape}")
    seeds = [int(s) for s in noise_seeds]
    if not seeds:
        raise ValueError("noise_seeds is empty; give at least one seed")
    env = gym.make(ENV_IDS[check_layout(layout)])
    success = np.zeros((len(pairs), len(seeds)), bool)
    steps, n_plans = np.full(success.shape, np.nan), np.zeros(success.shape, int)
    evals0, t0 = planner.denoiser_evals, time.perf_counter()
    for i, (start, goal) in enumerate(pairs):
        for j, s in enumerate(seeds):
            planner.seed = s
            r = reach_goal(env, planner, start, goal, seed=i, max_steps=max_steps)
            success[i, j], n_plans[i, j] = r["success"], r["n_plans"]
            steps[i, j] = r["steps"] if r["success"] else np.nan
        if log is not None:
            log(f"  pair {i}: success {success[i].mean():.2f} ({time.perf_counter() - t0:.0f} s)")
    env.close()
    return {"success": success, "steps": steps, "n_plans": n_plans,
            "denoiser_evals": planner.denoiser_evals - evals0, "seconds": time.perf_counter() - t0}


def classify(success) -> dict:
    """Sort pairs by their success over noise seeds: ``success: (P, S) bool``.

    Returns ``always`` / ``sometimes`` / ``never`` (indices of pairs that succeed for every seed, for
    some, for none), ``rate: (P,)`` per-pair success rates, and the counts ``n_always`` ... .
    A failure of a ``sometimes`` pair is bad luck of the noise; a ``never`` pair fails systematically.
    """
    s = np.asarray(success, dtype=bool)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"success must be a non-empty (pairs, seeds) array, got shape {s.shape}")
    rate = s.mean(1)
    out = {"always": np.flatnonzero(rate == 1).tolist(), "sometimes": np.flatnonzero((rate > 0) & (rate < 1)).tolist(),
           "never": np.flatnonzero(rate == 0).tolist(), "rate": rate}
    out.update({f"n_{k}": len(out[k]) for k in ("always", "sometimes", "never")})
    return out


def failure_summary(success) -> dict:
    """``{"failure_rate", "n_episodes", "ci95": [low, high]}`` (Wilson) of all episodes of ``success``."""
    s = np.asarray(success, dtype=bool).ravel()
    if s.size == 0:
        raise ValueError("failure_summary needs at least one episode")
    low, high = wilson_ci95(int((~s).sum()), s.size)
    return {"failure_rate": round(float((~s).mean()), 4), "n_episodes": int(s.size), "ci95": [round(low, 4), round(high, 4)]}


def pusht_spread(starts, n_seeds: int = 8, policy_seed: int = 0, max_steps: int = 300) -> dict:
    """Push-T: ``n_seeds`` episodes per reset seed in ``starts`` that differ only in the sampler's noise.

    Runs ``pusht_rollout.evaluate`` on every start repeated ``n_seeds`` times, in lockstep: each
    copy draws its own rows of initial noise from the policy's generator (seed ``policy_seed``),
    so copies of one start differ by the noise alone (the physics is deterministic).
    Returns ``max_coverage: (n_starts, n_seeds)``, ``success: (n_starts, n_seeds)`` (coverage > 0.95),
    ``chunk_ms`` and ``seconds``.
    """
    from ..agents.pusht_policy import load_policy
    from ..agents.pusht_rollout import evaluate

    starts = [int(s) for s in starts]
    if not starts or int(n_seeds) < 1:
        raise ValueError(f"need at least one start and n_seeds >= 1, got {len(starts)} starts, n_seeds={n_seeds}")
    t0 = time.perf_counter()
    policy = load_policy("pusht-diffusion-policy", seed=policy_seed)
    r = evaluate(policy, seeds=np.repeat(starts, n_seeds), max_steps=max_steps, n_timing=1)
    cov = r["max_coverage"].reshape(len(starts), n_seeds)
    return {"max_coverage": cov, "success": cov > 0.95, "chunk_ms": r["chunk_ms"], "seconds": time.perf_counter() - t0}


def _spread_entry(sweep: dict) -> dict:
    """Per-pair spread of a maze sweep: the classification and the steps' spread over seeds."""
    c = classify(sweep["success"])
    steps = sweep["steps"]
    ok = ~np.isnan(steps).all(1)
    sd = [float(np.nanstd(row)) for row in steps[ok]]
    return {"n_pairs": int(len(c["rate"])), "n_seeds": int(steps.shape[1]), "n_always": c["n_always"],
            "n_sometimes": c["n_sometimes"], "n_never": c["n_never"], "always": c["always"], "sometimes": c["sometimes"],
            "never": c["never"], "pair_success": [round(float(x), 3) for x in c["rate"]],
            "pair_steps_mean": [None if np.isnan(row).all() else round(float(np.nanmean(row)), 1) for row in steps],
            "steps_sd_median": round(float(np.median(sd)), 1) if sd else None,
            "steps_sd_max": round(float(np.max(sd)), 1) if sd else None}


def bench(quick: bool = False, log=None) -> dict:
    """The chapter's measurements on Medium (``BENCH_PAIRS``) and Push-T (reset seeds 0, 1, ...).

    Full: the 16 pairs x 8 noise seeds for each of ``single``, ``temperature`` (``TEMPERATURE``),
    ``wall_check`` and ``best_of_n`` (``BEST_OF``), with the failure rate over all episodes and
    separately over the 12 typical pairs (``failure_rate_typical``) and the benchmark's 4 failures
    (``failure_rate_benchmark_failures``); Push-T 10 starts x 8 noise draws. ``quick``: 2 pairs x 2 seeds of
    at most 100 steps, Push-T 2 starts x 2 draws of 60 steps (a smoke test, < 60 s; not the numbers).
    ``plan_cost_factor``: network calls per plan relative to ``single``.
    """
    index = [0, BENCHMARK_FAILURES[0]] if quick else list(BENCH_PAIRS)
    pairs = make_eval_pairs("medium", 100, seed=BENCH_SEED)[index]
    flagged = np.isin(index, BENCHMARK_FAILURES)
    seeds = list(range(2 if quick else 8))
    loaded = load_diffuser("maze-medium-diffuser", device="cpu")
    variants = {"single": {}, "temperature": {"temperature": TEMPERATURE}, "wall_check": {"wall_check": True},
                "best_of_n": {"best_of": BEST_OF, "wall_check": True}}
    sweeps = {}
    for name, kw in variants.items():
        planner = make_noise_planner("medium", device="cpu", loaded=loaded, **kw)
        sweeps[name] = noise_sweep(planner, pairs, seeds, max_steps=100 if quick else None, log=log)
        if log is not None:
            log(f"{name}: failure {1 - sweeps[name]['success'].mean():.3f} ({sweeps[name]['seconds']:.0f} s)")
    out = {"layout": "medium", "pairs_seed": BENCH_SEED, "pair_index": index, "noise_seeds": seeds}
    base_calls = sweeps["single"]["denoiser_evals"] / sweeps["single"]["n_plans"].sum()
    for name, kw in variants.items():
        sw = sweeps[name]
        entry = failure_summary(sw["success"])
        entry["failure_rate_typical"] = failure_summary(sw["success"][~flagged])
        entry["failure_rate_benchmark_failures"] = failure_summary(sw["success"][flagged])
        steps = sw["steps"][~np.isnan(sw["steps"])]
        m, half = mean_ci95(steps) if steps.size else (float("nan"), 0.0)
        calls = sw["denoiser_evals"] / sw["n_plans"].sum()
        entry.update({"steps_to_goal": round(m, 1), "steps_ci95": round(half, 1),
                      "plans_per_episode": round(float(sw["n_plans"].mean()), 2),
                      "plan_cost_factor": round(calls / base_calls, 2), "seconds": round(sw["seconds"], 1)})
        entry.update({k: v for k, v in kw.items() if k != "wall_check"})
        if name == "best_of_n":
            entry["n"] = BEST_OF
        entry["per_start"] = _spread_entry(sw)
        out[name] = entry
    out["per_start"] = out["single"]["per_start"]
    starts, n_draws = (range(2), 2) if quick else (range(10), 8)
    pt = pusht_spread(list(starts), n_draws, max_steps=60 if quick else 300)
    cov = pt["max_coverage"]
    out["pusht"] = {"starts": list(starts), "n_draws": n_draws, "n_episodes": int(cov.size),
                    "mean_max_coverage": round(float(cov.mean()), 4), "ci95": round(mean_ci95(cov.ravel())[1], 4),
                    "start_mean": np.round(cov.mean(1), 4).tolist(), "start_min": np.round(cov.min(1), 4).tolist(),
                    "start_max": np.round(cov.max(1), 4).tolist(), "start_sd": np.round(cov.std(1), 4).tolist(),
                    "success": round(float(pt["success"].mean()), 4),
                    "success_ci95": [round(x, 4) for x in wilson_ci95(int(pt["success"].sum()), cov.size)],
                    "starts_always_success": int(pt["success"].all(1).sum()),
                    "starts_sometimes_success": int((pt["success"].any(1) & ~pt["success"].all(1)).sum()),
                    "starts_never_success": int((~pt["success"].any(1)).sum()),
                    "seconds": round(pt["seconds"], 1)}
    return out
