"""Training stability: a diffusion model and a GAN on the same data, network size and budget, over seeds.

The diffusion model minimises a regression loss, ``E || eps - eps_theta(x_t, t) ||^2``, whose
target does not move: the same data, the same noise distribution at every step. A GAN
(Goodfellow et al. 2014) trains a generator ``G`` against a discriminator ``D`` that is itself
being trained, a two-player game whose losses do not measure sample quality and whose outcome
depends on the seed (mode dropping, oscillation). This module trains both on the six-mode
mixture of Chapter 1 with equal MLP widths, steps and batch size, for several seeds, and scores
each run's samples the same way (:func:`tutorial_lib.diffusion.metrics.quality_ratio` and the mixture's
mode-weight error).
"""

from __future__ import annotations

from dataclasses import dataclass

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from ..diffusion.ddpm import GaussianDiffusion, make_beta_schedule
from .recap import eval_sets
from ..diffusion.metrics import quality_ratio
from ..nets.mlp import TimeMLP, mlp
from ..diffusion.toy_data import MIXTURES, sample_dataset
from ..core.training import update_ema

__all__ = ["StabilityConfig", "train_ddpm_run", "train_gan_run", "stability_experiment", "spearman",
           "stability_summary", "stability_bench"]


@dataclass(frozen=True)
class StabilityConfig:
    """Shared by both model families: data, width, depth, steps, batch, evaluation schedule.

    Both are trained with Adam at a constant learning rate and sampled from an exponential moving
    average of their weights (``ema_decay``; of the generator, for the GAN), as diffusion models
    always are; the GAN uses ``gan_lr`` and ``beta1 = 0.5`` (the usual DCGAN settings).
    Every ``eval_every`` steps, ``n_eval`` samples are scored (DDPM: DDIM with ``sample_steps``).
    ``dataset``: ``"six_modes"`` or ``"grid25"`` (a mixture of ``toy_data.MIXTURES``, for the mode scores).
    """

    def __post_init__(self):
        if self.dataset not in MIXTURES:
            raise ValueError(f"dataset must be one of {sorted(MIXTURES)} (a mixture, for the mode scores), "
                             f"got {self.dataset!r}")
        if self.eval_every % self.log_every:
            raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of log_every ({self.log_every}), "
                             f"so that each score has the loss of the steps just before it")

    dataset: str = "six_modes"
    n_train: int = 10_000
    data_seed: int = 0
    hidden: int = 128
    depth: int = 3
    n_steps: int = 1_500
    batch_size: int = 256
    lr: float = 1e-3
    n_diffusion_steps: int = 1000
    sample_steps: int = 20
    latent_dim: int = 8
    gan_lr: float = 2e-4
    n_eval: int = 1000
    eval_every: int = 250
    log_every: int = 50
    ema_decay: float = 0.99


def _data(cfg: StabilityConfig) -> torch.Tensor:
    return sample_dataset(cfg.dataset, cfg.n_train, torch.Generator().manual_seed(cfg.data_seed))


def _score(samples: torch.Tensor, cfg: StabilityConfig) -> tuple[float, float, float]:
    """``(quality ratio, mode-weight error, mode coverage)`` of ``samples`` (see ``GaussianMixture.mode_coverage``)."""
    heldout, reference = eval_sets(cfg.dataset, cfg.n_eval)
    mixture = MIXTURES[cfg.dataset]()
    return (quality_ratio(samples, reference, heldout), mixture.mode_weight_error(samples),
            mixture.mode_coverage(samples)[0])


class _Log:
    """Running means of named losses every ``log_every`` steps, and scores every ``eval_every``."""

    def __init__(self, cfg: StabilityConfig, names):
        self.cfg, self.sums = cfg, {n: 0.0 for n in names}
        self.out = {n: [] for n in names} | {"eval_steps": [], "quality": [], "mode_weight_error": [], "mode_coverage": []}

    def add(self, step: int, sample, **losses):
        for n, v in losses.items():
            self.sums[n] += v
        if step % self.cfg.log_every == 0:
            for n in self.sums:
                self.out[n].append(self.sums[n] / self.cfg.log_every)
                self.sums[n] = 0.0
        if step % self.cfg.eval_every == 0:
            with torch.no_grad():
                q, w, c = _score(sample(), self.cfg)
            self.out["eval_steps"].append(step)
            self.out["quality"].append(q)
            self.out["mode_weight_error"].append(w)
            self.out["mode_coverage"].append(c)


def train_ddpm_run(cfg: StabilityConfig, seed: int) -> dict:
    """One DDPM run (``TimeMLP``, linear schedule, epsilon prediction) from seed ``seed``.

    Returns ``loss`` (means of every ``log_every`` steps), and at every ``eval_every`` steps the
    ``quality`` ratio and ``mode_weight_error`` of ``n_eval`` DDIM samples (quadratic spacing);
    ``samples``: the last ones.
    """
    data = _data(cfg)
    diffusion = GaussianDiffusion(make_beta_schedule("linear", cfg.n_diffusion_steps), prediction="epsilon")
    torch.manual_seed(seed)
    net = TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    last = {}

    def sample():
        last["samples"] = diffusion.ddim_sample_loop(ema, (cfg.n_eval, 2), cfg.sample_steps,
                                                     generator=torch.Generator().manual_seed(seed),
                                                     spacing="quadratic")
        return last["samples"]

    log = _Log(cfg, ["loss"])
    for step in range(1, cfg.n_steps + 1):
        loss = diffusion.training_loss(net, data[torch.randint(0, len(data), (cfg.batch_size,), generator=g)], g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, net, cfg.ema_decay)
        log.add(step, sample, loss=loss.item())
    return {**log.out, "samples": last["samples"]}


def train_gan_run(cfg: StabilityConfig, seed: int) -> dict:
    """One GAN run from seed ``seed``: ``G: z (latent_dim) -> x (2)``, ``D: x -> logit``, MLPs of
    the denoiser's width and depth, the non-saturating loss, one ``D`` step per ``G`` step.

    Returns ``d_loss``, ``g_loss`` (means of every ``log_every`` steps), ``quality`` and
    ``mode_weight_error`` at every ``eval_every`` steps, and the last ``samples``.
    """
    data = _data(cfg)
    torch.manual_seed(seed)
    leaky = functools.partial(nn.LeakyReLU, 0.2)
    gen = mlp(cfg.latent_dim, 2, cfg.hidden, cfg.depth, activation=leaky)
    disc = mlp(2, 1, cfg.hidden, cfg.depth, activation=leaky)
    ema = copy.deepcopy(gen).requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    ones, zeros = torch.ones(cfg.batch_size, 1), torch.zeros(cfg.batch_size, 1)
    last = {}

    def sample():
        last["samples"] = ema(torch.randn(cfg.n_eval, cfg.latent_dim, generator=torch.Generator().manual_seed(seed)))
        return last["samples"]

    log = _Log(cfg, ["d_loss", "g_loss"])
    for step in range(1, cfg.n_steps + 1):
        real = data[torch.randint(0, len(data), (cfg.batch_size,), generator=g)]
        fake = gen(torch.randn(cfg.batch_size, cfg.latent_dim, generator=g))
        # D: maximise log D(real) + log(1 - D(fake))
        d_loss = (F.binary_cross_entropy_with_logits(disc(real), ones)
                  + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # G: maximise log D(fake), the non-saturating loss
        g_loss = F.binary_cross_entropy_with_logits(disc(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        update_ema(ema, gen, cfg.ema_decay)
        log.add(step, sample, d_loss=d_loss.item(), g_loss=g_loss.item())
    return {**log.out, "samples": last["samples"].detach()}


def stability_experiment(cfg: StabilityConfig = StabilityConfig(), seeds=(0, 1, 2)) -> dict:
    """Both families over ``seeds``. Per family: the runs, and ``final_quality`` /
    ``final_mode_weight_error`` (one per seed, at the last step)."""
    out: dict = {"seeds": list(seeds), "eval_steps": list(range(cfg.eval_every, cfg.n_steps + 1, cfg.eval_every))}
    for name, fn in (("ddpm", train_ddpm_run), ("gan", train_gan_run)):
        runs = [fn(cfg, s) for s in seeds]
        out[f"{name}_runs"] = runs
        out[f"{name}_final_quality"] = [r["quality"][-1] for r in runs]
        out[f"{name}_final_mode_weight_error"] = [r["mode_weight_error"][-1] for r in runs]
    return out


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equal-length sequences: Pearson's correlation of their ranks, tied values
    sharing their mean rank; NaN when one sequence is constant."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1D sequences of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")

    def ranks(x):   # (number below) + (number equal - 1) / 2
        below = (x[None, :] < x[:, None]).sum(1).double()
        equal = (x[None, :] == x[:, None]).sum(1).double()
        return below + (equal - 1) / 2

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return float("nan") if den == 0 else float((ra @ rb).item() / den)


def stability_summary(res: dict, cfg: StabilityConfig) -> dict:
    """Per family (``ddpm``, ``gan``), from ``stability_experiment``'s runs:

    - ``final_quality``: the last quality ratio of each seed; ``final_quality_cv``: their standard deviation over
      their mean (coefficient of variation, population std); ``worst_seed_quality`` / ``best_seed_quality``;
    - ``mode_coverage``: the mean over seeds of the covered share of modes at the last step (and per seed);
    - ``loss_quality_correlation``: within each run, Spearman's correlation between the training loss (the
      mean over the ``log_every`` steps before each score; the generator's loss for the GAN) and the quality
      ratio at the scored steps, averaged over seeds: +1 means the loss ranks the checkpoints as the quality
      does; ``d_loss_quality_correlation`` for the discriminator's loss; ``late_loss_quality_correlation``:
      the same over the second half of training only, where a loss that has flattened says little;
    - ``final_loss_vs_quality_across_seeds``: Spearman's correlation across seeds of the final loss and the final
      quality (does the loss tell which seed is better?).
    """
    out = {}
    for name, loss_key in (("ddpm", "loss"), ("gan", "g_loss")):
        runs = res[f"{name}_runs"]
        final = torch.tensor([r["quality"][-1] for r in runs], dtype=torch.float64)
        idx = [e // cfg.log_every - 1 for e in res["eval_steps"]]
        half = len(idx) // 2
        corr = [spearman([r[loss_key][i] for i in idx], r["quality"]) for r in runs]
        late = [spearman([r[loss_key][i] for i in idx[half:]], r["quality"][half:]) if len(idx) - half >= 2
                else float("nan") for r in runs]
        entry = {"final_quality": final.tolist(),
                 "final_quality_cv": float(final.std(unbiased=False) / final.mean()),
                 "worst_seed_quality": float(final.max()), "best_seed_quality": float(final.min()),
                 "mode_coverage": float(sum(r["mode_coverage"][-1] for r in runs) / len(runs)),
                 "mode_coverage_by_seed": [r["mode_coverage"][-1] for r in runs],
                 "loss_quality_correlation": float(torch.tensor(corr).nanmean()),
                 "late_loss_quality_correlation": float(torch.tensor(late).nanmean()),
                 "final_loss_vs_quality_across_seeds": spearman([r[loss_key][-1] for r in runs], final)}
        if name == "gan":
            entry["d_loss_quality_correlation"] = float(torch.tensor(
                [spearman([r["d_loss"][i] for i in idx], r["quality"]) for r in runs]).nanmean())
        out[name] = entry
    return out


STUDY = StabilityConfig(n_steps=8_000, eval_every=500, log_every=100, sample_steps=50)
"""The full study: 8000 steps of batch 256 (eight times the notebook's live runs), scored every 500 steps, DDPM
sampled with 50 DDIM steps. By then the DDPM's quality and coverage have stopped improving (see the curves in
``stable_training``)."""


def stability_bench(seeds=(0, 1, 2, 3, 4), datasets=("six_modes", "grid25"), cfg: StabilityConfig = STUDY,
                    log=None) -> dict:
    """The ``stability`` entry of ``bench motivation``: per dataset, ``stability_summary`` of ``seeds`` runs of each
    family, with the quality and coverage curves (``curves``); ``ddpm`` and ``gan`` repeat the harder data set's
    (the last of ``datasets``) summary."""
    import dataclasses
    import time

    out: dict = {"seeds": list(seeds), "n_steps": cfg.n_steps, "eval_every": cfg.eval_every, "by_dataset": {}}
    for dataset in datasets:
        t0 = time.perf_counter()
        c = dataclasses.replace(cfg, dataset=dataset)
        res = stability_experiment(c, seeds)
        summary = stability_summary(res, c)
        summary["eval_steps"] = res["eval_steps"]
        summary["curves"] = {name: {"quality": [r["quality"] for r in res[f"{name}_runs"]],
                                    "mode_coverage": [r["mode_coverage"] for r in res[f"{name}_runs"]],
                                    "loss": [r["loss" if name == "ddpm" else "g_loss"] for r in res[f"{name}_runs"]]}
                             for name in ("ddpm", "gan")}
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        out["by_dataset"][dataset] = summary
        if log is not None:
            log(f"  {dataset}: " + "; ".join(
                f"{n} final quality {[round(q, 2) for q in summary[n]['final_quality']]}, coverage "
                f"{summary[n]['mode_coverage']:.2f}, loss-quality correlation {summary[n]['loss_quality_correlation']:.2f}"
                for n in ("ddpm", "gan")) + f" ({summary['seconds']:.0f} s)")
    hard = out["by_dataset"][datasets[-1]]
    out["harder_dataset"] = datasets[-1]
    for name in ("ddpm", "gan"):
        out[name] = {k: v for k, v in hard[name].items()}
    return out
