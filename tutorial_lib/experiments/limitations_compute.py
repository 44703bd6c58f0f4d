"""The cost of diffusion for control, measured (Part 5, "computational cost").

Two costs, on the book's shipped models:

- **training**: gradient steps and wall-clock to the shipped quality, read from ``data/MANIFEST.json``
  (the train commands record them): the Push-T diffusion policy against behaviour cloning on the
  same demonstrations, the maze Diffusers against maze behaviour cloning;
- **inference**: network evaluations (NFE) and milliseconds per decision, and the quality they buy.
  On Push-T, a decision is one action chunk: DDIM with ``k`` steps (eta = 0) costs ``k`` NFE, DDPM
  ancestral sampling on a respaced chain of ``k`` steps (``ddpm.respace``) also ``k``, behaviour
  cloning one forward pass of an MLP. On the maze, a decision is one plan of the Diffuser planner
  (16 candidates in one batch, ``k`` DDIM steps each).

``bench(quick)`` runs the sweeps for ``python -m tutorial_lib.bench limitations`` (key ``compute``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..agents.pusht_policy import DiffusionPolicy, load_policy
from ..agents.pusht_rollout import EVAL_SEEDS, evaluate
from ..core.assets import read_manifest
from ..core.stats import mean_ci95, wilson_ci95
from ..diffusion.ddpm import respace, respaced_model
from ..envs.maze_expert import evaluate_policy, make_eval_pairs
from .maze_eval import BENCH_SEED, ENV_IDS, make_planner, plan_timing

__all__ = ["STEP_COUNTS", "RespacedDDPMPolicy", "training_cost", "pusht_step_sweep", "maze_step_sweep",
           "chunk_ms", "first_observations", "distilled_policy_entry", "few_step_planner", "bench"]

STEP_COUNTS = (1, 2, 5, 10, 20)
"""Denoising steps per decision in the sweeps (the shipped policy uses DDIM with 10 of its 100)."""


class RespacedDDPMPolicy(DiffusionPolicy):
    """The shipped diffusion policy sampled by DDPM on a respaced chain of ``ddim_steps`` steps.

    ``respace`` keeps ``bar-alpha`` at the ``k`` steps DDIM would visit and makes each transition an
    ancestral DDPM step (Nichol & Dhariwal 2021): fresh noise at every step, ``k`` NFE per chunk.
    """

    def _predict(self, o, return_trajectory: bool = False):
        short, steps = respace(self.diffusion, self.ddim_steps)
        denoiser = respaced_model(lambda x, t: self.denoiser(x, t, o), steps)
        return short.p_sample_loop(denoiser, (o.shape[0], self.cfg.horizon, 2), generator=self.generator,
                                   return_trajectory=return_trajectory)


def _ddpm_policy(k: int, seed: int = 0) -> RespacedDDPMPolicy:
    """The shipped policy's network and normalisers, sampled by DDPM on ``k`` respaced steps."""
    p = load_policy("pusht-diffusion-policy", device="cpu", ddim_steps=k, seed=seed)
    return RespacedDDPMPolicy(p.net, p.cfg, p.obs_normalizer, p.action_normalizer, ddim_steps=k,
                              generator=torch.Generator().manual_seed(seed))


def training_cost() -> dict:
    """Gradient steps and seconds of training of the shipped models, from ``data/MANIFEST.json``.

    ``{"pusht": {"diffusion_policy": {...}, "bc": {...}}, "maze": {layout: {"diffuser": {...}, "bc": {...}}}}``,
    each ``{"steps", "train_seconds", "seconds_per_1k_steps"}`` (one CPU thread, as the manifest says).
    """
    files = read_manifest()

    def entry(name: str) -> dict:
        e = files[f"checkpoints/{name}.pt"]
        return {"steps": e["steps"], "train_seconds": round(e["train_seconds"], 1),
                "seconds_per_1k_steps": round(1000 * e["train_seconds"] / e["steps"], 1)}

    return {"pusht": {"diffusion_policy": entry("pusht_diffusion_policy"), "bc": entry("pusht_bc"),
                      "distilled_student": entry("pusht_distilled_policy")},
            "maze": {layout: {"diffuser": entry(f"maze_{layout}_diffuser"), "bc": entry(f"maze_{layout}_bc")}
                     for layout in ("umaze", "medium", "large")}}


def chunk_ms(policy, obs_histories, repeats: int = 3) -> float:
    """Median wall time of one batch-of-one decision, in ms, over the given observation histories."""
    times = []
    for _ in range(repeats):
        for o in obs_histories:
            t0 = time.perf_counter()
            policy.predict_chunk(o)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _pusht_entry(ev: dict, nfe: int, ms: float) -> dict:
    return {"mean_max_coverage": round(ev["mean_max_coverage"], 4), "success": round(ev["success"], 4),
            "nfe": nfe, "ms_per_chunk": round(ms, 2), "n_episodes": ev["n_episodes"],
            "ci95": {"mean_max_coverage": round(ev["ci95"]["mean_max_coverage"], 4),
                     "success": [round(x, 4) for x in ev["ci95"]["success"]]}}


def pusht_step_sweep(seeds=EVAL_SEEDS, steps=STEP_COUNTS, samplers=("ddim", "ddpm"), log=None) -> dict:
    """Mean max coverage, success, NFE and ms per chunk of the shipped policy at each step count.

    ``{"ddim": {k: entry}, "ddpm": {k: entry}, "bc": entry}``; every sampler starts from the same
    sampler seed (0) on the same reset seeds. Timings: batch of one, one CPU thread, on the first
    observations of the first 10 seeds.
    """
    seeds = [int(s) for s in seeds]
    out: dict = {}
    bc = load_policy("pusht-bc", device="cpu")
    histories = [np.stack([o] * bc.cfg.n_obs_steps) for o in first_observations(seeds[:10])]
    out["bc"] = _pusht_entry(evaluate(bc, seeds), 1, chunk_ms(bc, histories))
    for sampler in samplers:
        out[sampler] = {}
        for k in steps:
            policy = (load_policy("pusht-diffusion-policy", device="cpu", ddim_steps=k) if sampler == "ddim"
                      else _ddpm_policy(k))
            out[sampler][k] = _pusht_entry(evaluate(policy, seeds), k, chunk_ms(policy, histories))
            if log is not None:
                log(f"  push-t {sampler} {k} steps: {out[sampler][k]}")
    return out


def first_observations(seeds) -> list:
    """The first keypoint observation ``(20,)`` of Push-T after ``reset(seed)``, for each seed."""
    from ..envs.pusht import PushTEnv

    env = PushTEnv(obs_type="keypoints")
    return [env.reset(seed=int(s))[0] for s in seeds]


def maze_step_sweep(layout: str = "medium", n_pairs: int = 50, steps=(1, 2, 4, 8, 16), seed: int = BENCH_SEED,
                    log=None) -> dict:
    """The Diffuser planner with ``k`` DDIM steps per plan: success, NFE per plan and ms per plan.

    ``{k: {"success", "ci95", "n_episodes", "nfe_per_plan", "plan_ms"}}`` on ``make_eval_pairs(layout,
    n_pairs, seed)``; ``plan_ms``: median wall time of one plan on one CPU thread (``plan_timing``).
    """
    pairs = make_eval_pairs(layout, n_pairs, seed=seed)
    out = {}
    for k in steps:
        planner = make_planner(layout, device="cpu", ddim_steps=k)
        r = evaluate_policy(ENV_IDS[layout], planner, pairs)
        low, high = wilson_ci95(int(r.success.sum()), len(r.success))
        timing = plan_timing(planner, pairs[:10])           # plan() starts from the given state: no reset needed
        out[k] = {"success": round(float(r.success.mean()), 4), "ci95": [round(low, 4), round(high, 4)],
                  "n_episodes": len(r.success), "nfe_per_plan": k, "plan_ms": round(timing["plan_ms"], 1)}
        if log is not None:
            log(f"  {layout} DDIM {k} steps: {out[k]}")
    return out


def distilled_policy_entry(seeds=EVAL_SEEDS, log=None) -> dict:
    """The one-step student of the shipped policy (recipe ``pusht-distilled-policy``,
    :mod:`~tutorial_lib.agents.pusht_distilled`) on the same starts: the sweep's entry, 1 NFE per chunk."""
    from ..agents.pusht_distilled import load_distilled_policy

    seeds = [int(s) for s in seeds]
    policy = load_distilled_policy(device="cpu", seed=0)
    histories = [np.stack([o] * policy.cfg.n_obs_steps) for o in first_observations(seeds[:10])]
    entry = _pusht_entry(evaluate(policy, seeds), policy.nfe, chunk_ms(policy, histories))
    entry["method"] = "one-step distillation of the shipped policy (DDIM 10 steps, eta = 0)"
    if log is not None:
        log(f"  push-t distilled student: {entry}")
    return entry


def few_step_planner(layout: str = "medium", n_validation: int = 30, n_pairs: int = 100, success_bar: float = 0.95,
                     steps=(1, 2, 4, 8, 16), log=None) -> dict:
    """The fewest DDIM steps per plan that keep the planner's success at ``success_bar``.

    The step count is chosen on validation pairs (``VALIDATION_SEED``), then the planner is evaluated
    on the benchmark's random pairs (``BENCH_SEED``, the random-pairs protocol): ``{"ddim_steps",
    "nfe_per_plan", "plan_ms", "success", "ci95", "n_episodes", "validation": {k: success}}``. If no
    step count reaches the bar on validation, the largest is taken and the entry says so.
    """
    from .maze_eval import VALIDATION_SEED

    validation = {}
    for k in steps:
        r = evaluate_policy(ENV_IDS[layout], make_planner(layout, device="cpu", ddim_steps=k),
                            make_eval_pairs(layout, n_validation, seed=VALIDATION_SEED))
        validation[k] = round(float(r.success.mean()), 4)
        if log is not None:
            log(f"  {layout} validation, DDIM {k} steps: success {validation[k]}")
        if validation[k] >= success_bar:
            break
    k = next((k for k in steps if validation.get(k, 0.0) >= success_bar), steps[-1])
    entry = maze_step_sweep(layout, n_pairs=n_pairs, steps=(k,), log=log)[k]
    return {"ddim_steps": k, "reached_bar_on_validation": validation.get(k, 0.0) >= success_bar,
            **entry, "validation": validation}


def bench(quick: bool = False, log=None) -> dict:
    """The ``compute`` key of ``bench limitations``: training cost, the Push-T and maze step sweeps,
    and the few-step planner and policy against the shipped ones.

    Full: Push-T on 100 reset seeds (0..99), maze Medium on 50 pairs (the sweep) and 100 pairs (the
    few-step planner); quick: 2 seeds, 2 pairs, two step counts. ``pusht.diffusion_policy`` is the
    shipped setting (DDIM, 10 steps) and ``pusht.few_step`` its one-step distilled student
    (:func:`distilled_policy_entry`), on the same starts; the shipped network with 2 DDIM steps stays
    in the sweep, ``pusht.ddim[2]``.
    """
    torch.set_num_threads(1)
    result = {"training": training_cost()}
    sweep = pusht_step_sweep(EVAL_SEEDS[:2] if quick else range(100), steps=(1, 2, 10) if quick else STEP_COUNTS,
                             log=log)
    sweep["diffusion_policy"] = sweep["ddim"][10]
    sweep["few_step"] = distilled_policy_entry(EVAL_SEEDS[:2] if quick else range(100), log=log)
    result["pusht"] = sweep
    result["maze"] = {"medium": maze_step_sweep("medium", n_pairs=2 if quick else 50,
                                                steps=(1, 16) if quick else (1, 2, 4, 8, 16), log=log)}
    result["maze"]["few_step"] = few_step_planner("medium", n_validation=2 if quick else 30,
                                                  n_pairs=2 if quick else 100, steps=(1, 16) if quick else (1, 2, 4, 8, 16),
                                                  log=log)
    return result
