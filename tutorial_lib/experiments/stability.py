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
from ..diffusion.toy_data import sample_dataset, six_mode_mixture
from ..core.training import update_ema

__all__ = ["StabilityConfig", "train_ddpm_run", "train_gan_run", "stability_experiment"]


@dataclass(frozen=True)
class StabilityConfig:
    """Shared by both model families: data, width, depth, steps, batch, evaluation schedule.

    Both are trained with Adam at a constant learning rate and sampled from an exponential moving
    average of their weights (``ema_decay``; of the generator, for the GAN), as diffusion models
    always are; the GAN uses ``gan_lr`` and ``beta1 = 0.5`` (the usual DCGAN settings).
    Every ``eval_every`` steps, ``n_eval`` samples are scored (DDPM: DDIM with ``sample_steps``).
    """

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
    return sample_dataset("six_modes", cfg.n_train, torch.Generator().manual_seed(cfg.data_seed))


def _score(samples: torch.Tensor, cfg: StabilityConfig) -> tuple[float, float]:
    heldout, reference = eval_sets("six_modes", cfg.n_eval)
    return quality_ratio(samples, reference, heldout), six_mode_mixture().mode_weight_error(samples)


class _Log:
    """Running means of named losses every ``log_every`` steps, and scores every ``eval_every``."""

    def __init__(self, cfg: StabilityConfig, names):
        self.cfg, self.sums = cfg, {n: 0.0 for n in names}
        self.out = {n: [] for n in names} | {"eval_steps": [], "quality": [], "mode_weight_error": []}

    def add(self, step: int, sample, **losses):
        for n, v in losses.items():
            self.sums[n] += v
        if step % self.cfg.log_every == 0:
            for n in self.sums:
                self.out[n].append(self.sums[n] / self.cfg.log_every)
                self.sums[n] = 0.0
        if step % self.cfg.eval_every == 0:
            with torch.no_grad():
                q, w = _score(sample(), self.cfg)
            self.out["eval_steps"].append(step)
            self.out["quality"].append(q)
            self.out["mode_weight_error"].append(w)


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
