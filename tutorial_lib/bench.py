"""Benchmarks: ``python -m tutorial_lib.bench SUITE`` prints progress, then one JSON line.

Suites:
    recap   Chapter 1: Langevin mode weights, DDPM/DDIM sample quality and sampling time.

``--quick`` runs a much smaller version (for tests); its numbers are not the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

__all__ = ["run_recap", "SUITES", "main"]


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
      good as fresh data; see ``evaluation.sampler_table``); and ``*_mode_weight_error``, the
      total variation between the mixture weights and the samples' shares.
    - ``swissroll_*``: the same for ``recap-ddpm-swissroll``, the hard case.
    - ``sample_ms_*``: median time to draw those 1000 samples with each sampler on the CPU.
    """
    from .evaluation import DEFAULT_SAMPLERS, langevin_mode_experiment, sampler_table
    from .recipes import RecapDDPMConfig, diffusion_from_config
    from .recipes import load_pretrained

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


SUITES = {"recap": run_recap}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("--quick", action="store_true", help="a small, fast version for tests")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = SUITES[args.suite](quick=args.quick)
    result["bench_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
