"""The measured experiments of Chapter 1, shared by its notebooks and ``python -m tutorial_lib.bench recap``.

Keeping them here means the website's numbers and the benchmark's are the same computation.
"""

from __future__ import annotations

import time

import torch

from ..diffusion.ddpm import GaussianDiffusion
from ..diffusion.langevin import annealed_langevin_dynamics, geometric_sigmas, langevin_dynamics
from ..diffusion.metrics import energy_distance
from ..diffusion.toy_data import GaussianMixture, sample_dataset, six_mode_mixture, song_ermon_mixture

__all__ = ["LANGEVIN_SETTINGS", "langevin_mode_experiment", "eval_sets", "DEFAULT_SAMPLERS", "sampler_table"]

# The Langevin experiment: particles start uniformly in [-8, 8]^2 (so half start in each basin).
LANGEVIN_SETTINGS = dict(n_particles=5000, box=8.0, step_size=0.1, n_steps=1000,
                         sigma_max=10.0, sigma_min=0.1, n_sigmas=10, annealed_step_size=1e-3, n_steps_each=100)


def langevin_mode_experiment(seed: int = 0, mixture: GaussianMixture | None = None, **overrides) -> dict:
    """Run plain and annealed Langevin dynamics from the same uniform start on a mixture.

    Returns the final particles and the total-variation error between the mixture weights and
    the share of particles in each mode, for both samplers.
    """
    s = {**LANGEVIN_SETTINGS, **overrides}
    gm = mixture if mixture is not None else song_ermon_mixture()
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(s["n_particles"], 2, generator=g) * 2 - 1) * s["box"]
    plain = langevin_dynamics(gm.score, x0, s["step_size"], s["n_steps"], generator=g)
    sigmas = geometric_sigmas(s["sigma_max"], s["sigma_min"], s["n_sigmas"])
    annealed = annealed_langevin_dynamics(lambda x, sigma: gm.noised(sigma).score(x), x0, sigmas,
                                          s["annealed_step_size"], s["n_steps_each"], generator=g)
    return {"x0": x0, "plain": plain, "annealed": annealed,
            "plain_error": gm.mode_weight_error(plain), "annealed_error": gm.mode_weight_error(annealed),
            "plain_shares": gm.mode_shares(plain).tolist(), "annealed_shares": gm.mode_shares(annealed).tolist()}


def eval_sets(dataset: str, n: int = 1000, noise: float = 0.03, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out data and a second fresh sample ("reference") of ``n`` points of a 2D data set,
    from seeds ``10_001 + 2 seed`` and ``10_002 + 2 seed``, distinct from the training set's."""
    return (sample_dataset(dataset, n, torch.Generator().manual_seed(10_001 + 2 * seed), noise),
            sample_dataset(dataset, n, torch.Generator().manual_seed(10_002 + 2 * seed), noise))


DEFAULT_SAMPLERS = (("DDPM", 1000, None), ("DDIM", 50, "uniform"), ("DDIM", 10, "uniform"),
                    ("DDIM", 10, "quadratic"), ("DDIM", 5, "quadratic"))


@torch.no_grad()
def sampler_table(model, diffusion: GaussianDiffusion, dataset: str, data_noise: float = 0.03,
                  samplers=DEFAULT_SAMPLERS, n: int = 1000, seeds=(0, 1, 2, 3, 4)) -> list[dict]:
    """Sample quality and speed of DDPM (all steps) and DDIM (eta = 0) with few steps.

    For each seed: ``n`` samples (timed), ``n`` held-out data points and ``n`` fresh "reference"
    data points. Quality ratio::

        sum_seeds ED(samples, heldout) / sum_seeds ED(reference, heldout)

    1 means "as close to held-out data as fresh data of the same size are". The energy distance
    of finite samples includes a sampling term that shrinks like 1/n, so for a fixed error the
    ratio grows with ``n``: compare ratios at equal ``n`` only.

    Args:
        dataset, data_noise: the data set the model was trained on (see ``toy_data.DATASETS``).
        samplers: ``(name, steps, spacing)`` triples; name ``"DDPM"`` (all steps) or ``"DDIM"``.
        seeds: one draw of ``n`` samples (and one held-out and reference set) per seed.
    Returns one dict per sampler: ``sampler``, ``steps``, ``spacing``, ``quality_ratio``, ``ms``
    (median milliseconds to draw ``n`` samples on ``diffusion.device``), ``samples`` (first seed),
    and for the six-mode mixture ``mode_weight_error`` (mean total variation between the weights
    and the share of samples per mode).
    """
    device = diffusion.device
    mixture = six_mode_mixture(scale=0.5) if dataset == "six_modes" else None
    sets = [eval_sets(dataset, n, data_noise, seed=s) for s in seeds]
    baseline = sum(energy_distance(reference, heldout) for heldout, reference in sets)
    rows = []
    for name, steps, spacing in samplers:
        distance, times, weight_errors, first = 0.0, [], [], None
        for s, (heldout, _) in zip(seeds, sets):
            gen = torch.Generator(device=device).manual_seed(s)
            t0 = time.perf_counter()
            if name == "DDPM":
                samples = diffusion.p_sample_loop(model, (n, 2), generator=gen)
            else:
                samples = diffusion.ddim_sample_loop(model, (n, 2), n_steps=steps, eta=0.0, generator=gen,
                                                     spacing=spacing)
            samples = samples.cpu()
            times.append(time.perf_counter() - t0)
            distance += energy_distance(samples, heldout)
            if mixture is not None:
                weight_errors.append(mixture.mode_weight_error(samples))
            first = samples if first is None else first
        row = {"sampler": name, "steps": diffusion.n_diffusion_steps if name == "DDPM" else steps,
               "spacing": spacing or "-", "quality_ratio": distance / baseline,
               "ms": 1000 * sorted(times)[len(times) // 2], "samples": first}
        if mixture is not None:
            row["mode_weight_error"] = sum(weight_errors) / len(weight_errors)
        rows.append(row)
    return rows
