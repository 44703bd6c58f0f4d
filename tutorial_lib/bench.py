"""Benchmarks: ``python -m tutorial_lib.bench SUITE`` prints progress, then one JSON line.

Suites:
    recap       Chapter 1: Langevin mode weights, DDPM/DDIM sample quality and sampling time.
    motivation  Chapter 2: behaviour cloning vs a diffusion policy on two-way demonstrations;
                naive, conservative and diffusion-steered offline RL on a 2D bandit;
                compounding error of a one-step model vs a sequence diffusion model in the maze.
    maze        Chapter 3: random, the waypoint expert, behaviour cloning, MPPI and Diffuser on the
                three maze2d layouts, 100 fixed start/goal pairs each.
    pusht       Chapter 3: the scripted expert, behaviour cloning and Diffusion Policy on Push-T.
    conditioning  Chapter 3: value guidance, classifier-free guidance and via-points in the maze.
    literature  Part 4: model-based diffusion against MPPI at equal roll-outs; a planning prior
                learned from an optimiser's solutions against the optimiser.
    limitations Part 5: compute (training cost, NFE and time per decision against quality),
                variance (spread over noise, remedies), constraints (walls, unseen obstacles, remedies),
                shift (online adaptation to a moved goal: diffusion self-imitation, Gaussian PPO, noise steering).

``--quick`` runs a much smaller version (for tests); its numbers are not the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

__all__ = ["run_recap", "run_motivation", "run_maze", "run_pusht", "run_conditioning", "run_literature", "run_limitations",
           "SUITES", "main"]


def _log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def run_recap(quick: bool = False, device=None) -> dict:
    """Chapter 1's claims, measured.

    - ``langevin_mode_weight_error`` / ``annealed_mode_weight_error``: total variation between
      the weights (0.2, 0.8) of Song & Ermon's mixture and the share of 5000 particles in each mode.
    - ``ddpm_quality_ratio`` (all 1000 steps) and ``ddim{10,5}_quality_ratio`` (DDIM, eta = 0,
      quadratic step spacing), ``ddim{50,10}_uniform_quality_ratio`` (uniform spacing): energy
      distance of 1000 samples of the shipped ``recap-ddpm`` model (six-mode mixture) to 1000
      held-out points, divided by that of 1000 fresh data points, summed over 5 seeds (1 = as
      good as fresh data; see ``experiments.recap.sampler_table``); and ``*_mode_weight_error``, the
      total variation between the mixture weights and the samples' shares.
    - ``swissroll_*``: the same for ``recap-ddpm-swissroll``, the hard case.
    - ``sample_ms_*``: median time to draw those 1000 samples with each sampler on the CPU.
    """
    from .experiments.recap import DEFAULT_SAMPLERS, langevin_mode_experiment, sampler_table
    from .diffusion.toy_models import RecapDDPMConfig, diffusion_from_config
    from .core.recipes import load_pretrained

    result: dict = {"suite": "recap", "quick": quick, "torch_threads": torch.get_num_threads()}
    _log("Langevin vs annealed Langevin on 0.2 N((-5,-5), I) + 0.8 N((5,5), I)")
    overrides = dict(n_particles=500, n_steps=200, n_steps_each=20) if quick else {}
    lang = langevin_mode_experiment(seed=0, **overrides)
    result["langevin_mode_weight_error"] = round(lang["plain_error"], 4)
    result["annealed_mode_weight_error"] = round(lang["annealed_error"], 4)
    _log(f"  plain {lang['plain_error']:.3f}, annealed {lang['annealed_error']:.3f}")

    for recipe, prefix in [("recap-ddpm", ""), ("recap-ddpm-swissroll", "swissroll_")]:
        model, ckpt = load_pretrained(recipe, device=device or "cpu")
        config = RecapDDPMConfig(**ckpt["config"])
        _log(f"DDPM / DDIM on {config.dataset} (shipped checkpoint {recipe})")
        diffusion = diffusion_from_config(config).to(next(model.parameters()).device)
        samplers = (("DDPM", 1000, None), ("DDIM", 10, "quadratic")) if quick else DEFAULT_SAMPLERS
        rows = sampler_table(model, diffusion, config.dataset, config.data_noise, samplers=samplers,
                             n=200 if quick else 1000, seeds=(0,) if quick else (0, 1, 2, 3, 4))
        for row in rows:
            key = "ddpm" if row["sampler"] == "DDPM" else f"ddim{row['steps']}"
            key += "_uniform" if row["spacing"] == "uniform" else ""
            result[f"{prefix}{key}_quality_ratio"] = round(row["quality_ratio"], 3)
            if not prefix:
                result[f"sample_ms_{key}"] = round(row["ms"], 1)
            if "mode_weight_error" in row:
                result[f"{prefix}{key}_mode_weight_error"] = round(row["mode_weight_error"], 4)
            _log(f"  {key}: quality ratio {row['quality_ratio']:.3f}, {row['ms']:.1f} ms")
    return result


def _rounded(value, digits: int = 3):
    """Round the floats of a (nested) result for printing."""
    if isinstance(value, dict):
        return {str(k): _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return round(value, digits) if isinstance(value, float) else value


def run_motivation(quick: bool = False, device=None) -> dict:
    """Chapter 2's claims, measured; every model is small and trained here on the CPU (about 2 minutes).

    - ``multimodal``: success rates (goal reached, obstacle never touched) of behaviour cloning
      and of a diffusion policy trained on the same 50 demonstrations of the obstacle task,
      from 100 fixed start states (:func:`tutorial_lib.experiments.imitation.multimodal_experiment`).
    - ``offline_rl``: mean TRUE reward and out-of-distribution rate of the behaviour data, of
      the argmax of a regression Q, of the argmax of a CQL Q, and of diffusion samples ranked
      by Q (:func:`tutorial_lib.experiments.offline_bandit.offline_bandit_experiment`).
    - ``compounding``: mean position error (cells) against the horizon of the shipped one-step
      dynamics model rolled out autoregressively and of the shipped sequence diffusion model, on
      200 held-out U-Maze windows of 128 steps given the same start state and actions
      (:func:`tutorial_lib.experiments.compounding.compounding_experiment`); ``compounding_pusht``: the same
      on 200 held-out 64-step episodes of open-loop Push-T play (block position, pixels).
    - ``model_planning``: MPPI planning through the learned one-step model vs through the true dynamics vs
      Diffuser on 50 U-Maze random pairs: success, normalized score and the plan-execution gap, open and
      closed loop, and a data sweep of the learned model
      (:func:`tutorial_lib.experiments.model_planning.model_planning_bench`, about 30 minutes); its
      ``noise_sweep`` (full run only): the same three in a maze with process noise 0, 0.01, 0.03, 0.1 m/s per
      step, each MPPI plan executed open loop and tracked, on 20 pairs
      (:func:`tutorial_lib.experiments.model_planning_noise.noise_sweep_entry`, about 40 minutes).
    - ``smoothness``: jerk (third difference of the commanded position) and direction reversals of the executed
      motion, BC against the diffusion policy executing 1, 2, 4, 8 and 15 actions per chunk on Push-T (the shipped
      policies, 50 starts; quick: 1, 4, 8) and 1, 4, 8 on the obstacle task (100 starts), and of the
      demonstrations themselves
      (:mod:`tutorial_lib.experiments.smoothness`).
    - ``data_efficiency``: obstacle-task success of BC and the diffusion policy against the number of
      demonstrations, 3 seeds each (:func:`tutorial_lib.experiments.imitation.data_efficiency_experiment`).
    - ``stability``: DDPM and GAN trained 8000 steps from 5 seeds each on the six-mode mixture and the 25-mode
      grid: spread of the final quality, mode coverage, and how well each loss tracks quality
      (:func:`tutorial_lib.experiments.stability.stability_bench`).
    """
    from .experiments.imitation import ImitationConfig, multimodal_experiment
    from .experiments.offline_bandit import BanditConfig, offline_bandit_experiment

    result: dict = {"suite": "motivation", "quick": quick, "torch_threads": torch.get_num_threads()}
    if quick:
        im_cfg, n_eval = ImitationConfig(n_steps=300, hidden=64, depth=2), 20
        bandit_cfg, alphas = BanditConfig(n_data=500, q_steps=300, diffusion_steps=300, n_decisions=100), (1.0,)
    else:
        im_cfg, n_eval, bandit_cfg, alphas = ImitationConfig(), 100, BanditConfig(), (0.1, 1.0, 10.0)
    _log(f"imitation: BC vs diffusion policy on {im_cfg.n_demos} two-way demonstrations")
    mm = multimodal_experiment(im_cfg, n_eval=n_eval, device="cpu")
    result["multimodal"] = _rounded({k: v for k, v in mm.items() if not k.endswith("_rollout")}, 4)
    _log(f"  success: BC {mm['bc_success']:.2f}, diffusion {mm['diffusion_success']:.2f}")
    _log("offline RL: 2D bandit with four-mode behaviour data")
    rl = offline_bandit_experiment(bandit_cfg, alphas=alphas)
    result["offline_rl"] = _rounded(rl)
    _log(f"  return: behaviour {rl['behavior_return']:.2f}, naive {rl['naive_return']:.2f} "
         f"(OOD {rl['naive_ood_rate']:.2f}), conservative {rl['conservative_return']:.2f}, "
         f"diffusion {rl['diffusion_return']:.2f}")
    for task, key, unit in (("maze", "compounding", "cells"), ("pusht", "compounding_pusht", "px")):
        _log(f"compounding error ({task}): one-step model rolled out vs sequence diffusion (shipped checkpoints)")
        cp = compounding_result(task, n_windows=20 if quick else 200)
        result[key] = _rounded(cp, 6)
        _log(f"  error at horizon {cp['horizons'][-1]}: autoregressive {cp['autoregressive_error'][-1]:.4f}, "
             f"diffusion {cp['diffusion_error'][-1]:.4f} {unit} (ratio {cp['error_ratio_at_max_horizon']:.2f})")
    from .experiments.imitation import data_efficiency_experiment
    from .experiments.smoothness import (PUSHT_ACTION_STEPS, demonstration_smoothness, obstacle_smoothness,
                                         pusht_smoothness)

    _log("smoothness: jerk and reversals of the executed motion, BC vs the diffusion policy "
         "(1, 2, 4, 8, 15 actions per chunk; quick: 1, 4, 8)")
    result["smoothness"] = _rounded({
        "pusht": {**pusht_smoothness(list(range(3 if quick else 50)), (1, 4, 8) if quick else PUSHT_ACTION_STEPS),
                  "demonstrations": demonstration_smoothness("pusht")},
        "obstacle": {**obstacle_smoothness(n_eval=20 if quick else 100),
                     "demonstrations": demonstration_smoothness("obstacle")}}, 6)
    for task in ("pusht", "obstacle"):
        sm = result["smoothness"][task]
        _log(f"  {task} jerk: " + ", ".join(f"{k} {v['jerk']}" for k, v in sm.items()))
    _log("data efficiency: obstacle-task success against the number of demonstrations")
    if quick:
        de = data_efficiency_experiment(n_demos=(10, 50), seeds=(0,), n_eval=20, cfg=im_cfg)
    else:
        de = data_efficiency_experiment(log=_log)
    result["data_efficiency"] = _rounded(de, 4)
    from .experiments.stability import StabilityConfig, stability_bench

    _log("stable training: DDPM vs GAN, 5 seeds each, on the six-mode mixture and the 25-mode grid")
    if quick:
        tiny = StabilityConfig(n_train=512, hidden=32, depth=1, n_steps=60, batch_size=64, n_diffusion_steps=50,
                               sample_steps=5, n_eval=200, eval_every=20, log_every=10)
        st = stability_bench(seeds=(0, 1), cfg=tiny)
    else:
        st = stability_bench(log=_log)
    result["stability"] = _rounded(st, 4)
    from .experiments.model_planning import model_planning_bench

    _log("model planning (U-Maze): MPPI through the learned model vs the true model vs Diffuser")
    result["model_planning"] = model_planning_bench(quick=quick, log=_log, device=device)
    if not quick:
        from .experiments.model_planning_noise import noise_sweep_entry

        _log("model planning in a noisy maze: process noise 0, 0.01, 0.03, 0.1")
        result["model_planning"]["noise_sweep"] = noise_sweep_entry(log=_log, device=device)
    _log(f"  plan-execution gap at the plan's end, learned MPPI / Diffuser: "
         f"{result['model_planning']['gap_ratio_learned_vs_diffuser']:.2f}")
    return result


def compounding_result(task: str = "maze", n_windows: int = 200) -> dict:
    """The compounding-error experiment on the shipped checkpoints of ``task``, without the raw predictions."""
    from .experiments.compounding import compounding_experiment, load_compounding_models

    models = load_compounding_models(task)
    out = compounding_experiment(*models, n_windows=n_windows)
    return {k: v for k, v in out.items() if k not in ("true", "autoregressive", "diffusion")}


def _pusht_entry(ev: dict) -> dict:
    """The JSON entry of one Push-T evaluation: both scores, success, intervals, episodes, time."""
    return {"mean_max_coverage": round(ev["mean_max_coverage"], 4), "mean_max_reward": round(ev["mean_max_reward"], 4),
            "success": round(ev["success"], 4), "n_episodes": ev["n_episodes"],
            "ci95": {"mean_max_coverage": round(ev["ci95"]["mean_max_coverage"], 4),
                     "mean_max_reward": round(ev["ci95"]["mean_max_reward"], 4),
                     "success": [round(x, 4) for x in ev["ci95"]["success"]]},
            "chunk_ms": round(ev["chunk_ms"], 2)}


def run_pusht(quick: bool = False, device=None) -> dict:
    """Chapter 3's Push-T table: the scripted expert, behaviour cloning and Diffusion Policy.

    Behaviour cloning and the diffusion policy are rolled out from 500 reset seeds (0 .. 499; the
    demonstrations used seeds >= 10**6; one block of 50 starts varies by about ±0.02) for at most
    300 steps, under two start distributions:

    - ``bc`` / ``diffusion_policy``: the book's (``PushTEnv``'s default reset: no block in a wall);
    - ``reference_protocol.bc`` / ``reference_protocol.diffusion_policy``: the reference env's
      (block position set before its angle, no start rejected, one physics step first), the
      distribution behind the paper's numbers.

    Each entry: ``mean_max_coverage`` (the best coverage of each episode, averaged: the book's
    score), ``mean_max_reward`` (the paper's score, mean of max clip(coverage / 0.95)), ``success``
    (share of episodes reaching coverage > 0.95), ``n_episodes``, ``ci95`` (half-widths of the means'
    95 % t intervals, the Wilson interval of the success rate), ``chunk_ms`` (median wall time of
    one policy call, observation history -> 16-step chunk, on the CPU, DDIM with 10 steps).
    ``expert``: the scripted expert on the first 50 seeds of the book's protocol (it simulates many
    trial pushes per decision: 500 episodes would take half an hour). ``dp_vs_expert``: the
    diffusion policy's mean max coverage on those 50 seeds over the expert's. ``training_data``:
    the demonstrations the shipped diffusion policy learned from. ``variants`` (full runs only): the shipped
    policy against the same recipe without mirror images and with one observation, on seeds 100 .. 149
    (:func:`tutorial_lib.experiments.pusht_variants.variants_entry`).
    """
    from .core.assets import data_dir
    from .envs.pusht_demos import load_demonstrations, rollout_expert
    from .agents.pusht_policy import load_policy
    from .agents.pusht_rollout import EVAL_SEEDS, evaluate

    seeds = list(range(3)) if quick else list(range(500))
    expert_seeds = EVAL_SEEDS[:3] if quick else EVAL_SEEDS
    result: dict = {"suite": "pusht", "quick": quick, "torch_threads": torch.get_num_threads(),
                    "n_episodes": len(seeds), "reference_protocol": {}}
    _log(f"scripted expert on {len(expert_seeds)} seeds (the book's protocol)")
    runs = rollout_expert(expert_seeds, n_workers=2)
    result["expert"] = {"mean_max_coverage": round(float(sum(r["max_coverage"] for r in runs) / len(runs)), 4),
                        "success": round(float(sum(r["success"] for r in runs) / len(runs)), 4),
                        "n_episodes": len(runs)}
    _log(f"  {result['expert']}")
    first50 = {}
    for name, key in (("pusht-bc", "bc"), ("pusht-diffusion-policy", "diffusion_policy")):
        for protocol in ("book", "reference"):
            _log(f"{name} (shipped checkpoint) on {len(seeds)} seeds, the {protocol} protocol")
            policy = load_policy(name, device=device or "cpu")
            ev = evaluate(policy, seeds, protocol=protocol)
            entry = _pusht_entry(ev)
            (result if protocol == "book" else result["reference_protocol"])[key] = entry
            if protocol == "book":
                first50[key] = float(ev["max_coverage"][: len(expert_seeds)].mean())
            _log(f"  {entry}")
    result["chunk_ms"] = result["diffusion_policy"]["chunk_ms"]
    cfg = policy.cfg                          # the diffusion policy's, the loop's last
    demos = load_demonstrations(str(data_dir() / cfg.demos))
    result["training_data"] = {"file": cfg.demos, "episodes": int(len(demos["episode_ends"])),
                               "successful_episodes_used": int(demos["episode_success"].sum()),
                               "mirror": bool(cfg.mirror)}
    result["dp_vs_expert"] = round(first50["diffusion_policy"] / result["expert"]["mean_max_coverage"], 4)
    if not quick:
        from .experiments.pusht_variants import variants_entry

        _log("the exercises' ablations (no mirror images; one observation) on seeds 100 .. 149")
        result["variants"] = variants_entry(device=device)
    return result


def run_maze(quick: bool = False, device=None) -> dict:
    """Chapter 3's maze table: ``{"umaze": {...}, "medium": {...}, "large": {...}}``.

    Per layout (``maze_eval.maze_benchmark``): ``random``, ``expert``, ``bc``, ``mppi`` and
    ``diffuser``, each with ``success``, ``return``, ``normalized_score`` (100 (R - R_random) /
    (R_expert - R_random) on the same pairs) and ``steps_to_goal``; ``plan_ms``, the median CPU time
    of one Diffuser plan, and ``forward_ms``, of one network call. 100 pairs per layout
    (``make_eval_pairs(layout, 100, seed=0)``); ``--quick``: 2 pairs and a small MPPI.
    """
    from .experiments.maze_eval import maze_benchmark

    result: dict = {"suite": "maze", "quick": quick, "torch_threads": torch.get_num_threads()}
    for layout in ("umaze", "medium", "large"):
        _log(f"{layout}: {2 if quick else 100} start/goal pairs")
        t0 = time.perf_counter()
        result[layout] = maze_benchmark(layout, n_pairs=2 if quick else 100, device=device or "cpu",
                                        mppi_kwargs=dict(samples=16, horizon=16) if quick else None,
                                        timing_pairs=2 if quick else 20, log=_log)
        _log(f"  plan_ms {result[layout]['plan_ms']}, forward_ms {result[layout]['forward_ms']} "
             f"({time.perf_counter() - t0:.0f} s)")
    return result


def run_conditioning(quick: bool = False, device=None) -> dict:
    """Chapter 3's conditioning table (``maze_conditioning.conditioning_benchmark``): value guidance
    towards a bonus on Medium (per scale: steps in the bonus, share of episodes entering it, goal
    success), classifier-free guidance on U-Maze (per weight: success, plan end error, diversity),
    and via-points by inpainting on Medium (with and without the pin). 40 pairs each (seed 0;
    the guidance scales were chosen on seed 1); ``--quick``: 2 pairs."""
    from .experiments.maze_conditioning import cfg_experiment, guidance_experiment, inpainting_experiment

    n = 2 if quick else 40
    result: dict = {"suite": "conditioning", "quick": quick, "torch_threads": torch.get_num_threads()}
    for key, run in (("guidance", guidance_experiment), ("classifier_free", cfg_experiment),
                     ("inpainting", inpainting_experiment)):
        t0 = time.perf_counter()
        result[key] = _with_wilson(_rounded(run(n_pairs=n, seed=0, device=device or "cpu")), n)
        _log(f"{key}: {time.perf_counter() - t0:.0f} s")
    return result


_RATES = ("success", "bonus_visited", "via_passed", "both")


def _with_wilson(entry, n: int):
    """Add ``ci95``, the Wilson 95 % intervals of the shares ``_RATES`` over ``n`` episodes, to every
    dict of a (nested) result that has one; a share k / n is stored rounded, so k is recovered."""
    from .core.stats import wilson_ci95

    if not isinstance(entry, dict):
        return entry
    out = {k: _with_wilson(v, n) for k, v in entry.items()}
    rates = {k: v for k, v in entry.items() if k in _RATES and isinstance(v, float)}
    if rates:
        out["ci95"] = {k: [round(x, 4) for x in wilson_ci95(round(v * n), n)] for k, v in rates.items()}
        out["n_episodes"] = n
    return out


def run_literature(quick: bool = False, device=None) -> dict:
    """Part 4's runnable examples: ``model_based`` (``experiments.literature_model_based``),
    ``hybrid`` (``experiments.literature_hybrid``) and ``what_to_diffuse``
    (``experiments.literature_what_to_diffuse``); see each module's ``bench``."""
    from .experiments import literature_hybrid, literature_model_based, literature_what_to_diffuse

    result: dict = {"suite": "literature", "quick": quick, "torch_threads": torch.get_num_threads()}
    for key, module in (("model_based", literature_model_based), ("hybrid", literature_hybrid),
                        ("what_to_diffuse", literature_what_to_diffuse)):
        _log(f"{key}")
        t0 = time.perf_counter()
        result[key] = module.bench(quick=quick)
        _log(f"  {result[key]} ({time.perf_counter() - t0:.0f} s)")
    return result


def run_limitations(quick: bool = False, device=None) -> dict:
    """Part 5's measured limitations: ``compute``, ``variance``, ``constraints`` and ``shift`` (the
    modules ``experiments.limitations_*``; see each ``bench``)."""
    from .experiments import limitations_compute, limitations_constraints, limitations_variance, limitations_shift

    result: dict = {"suite": "limitations", "quick": quick, "torch_threads": torch.get_num_threads()}
    for key, module in (("compute", limitations_compute), ("variance", limitations_variance),
                        ("constraints", limitations_constraints), ("shift", limitations_shift)):
        _log(f"{key}")
        t0 = time.perf_counter()
        result[key] = module.bench(quick=quick)
        _log(f"  done ({time.perf_counter() - t0:.0f} s)")
    return result


SUITES = {"recap": run_recap, "motivation": run_motivation, "maze": run_maze, "pusht": run_pusht,
          "conditioning": run_conditioning, "literature": run_literature, "limitations": run_limitations}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("--quick", action="store_true", help="a small, fast version for tests")
    parser.add_argument("--out", default=None, help="also write the JSON to this file (e.g. data/bench/maze.json)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = SUITES[args.suite](quick=args.quick)
    result["bench_seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
