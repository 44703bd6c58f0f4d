"""The models the book trains: each recipe is a frozen config, a model, its data and its loss.

A recipe's name is what ``python -m tutorial_lib.train NAME`` takes; its config is saved inside
the checkpoint, so a checkpoint always says how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .ddpm import GaussianDiffusion, make_beta_schedule
from .nets.mlp import TimeMLP
from .score_matching import NoiseConditionalScoreNet, dsm_loss
from .toy_data import six_mode_mixture, swiss_roll
from .training import TrainConfig

__all__ = ["RecapDSMConfig", "RecapDDPMConfig", "Recipe", "RECIPES", "get_recipe", "diffusion_from_config"]


@dataclass(frozen=True)
class RecapDSMConfig:
    """Noise-conditional score network on samples of the six-mode mixture (Chapter 1)."""

    n_train: int = 20_000
    hidden: int = 128
    depth: int = 3
    sigma_min: float = 0.05
    sigma_max: float = 5.0
    n_steps: int = 20_000
    batch_size: int = 512
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0


@dataclass(frozen=True)
class RecapDDPMConfig:
    """Epsilon-prediction DDPM on the 2D swiss roll (Chapter 1)."""

    n_train: int = 20_000
    data_noise: float = 0.03
    hidden: int = 128
    depth: int = 3
    n_diffusion_steps: int = 1000
    schedule: str = "linear"
    n_steps: int = 30_000
    batch_size: int = 512
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0


def _train_config(cfg) -> TrainConfig:
    return TrainConfig(n_steps=cfg.n_steps, batch_size=cfg.batch_size, lr=cfg.lr, ema_decay=cfg.ema_decay,
                       seed=cfg.seed, checkpoint_every=max(1, min(2_000, cfg.n_steps)))


def diffusion_from_config(cfg: RecapDDPMConfig) -> GaussianDiffusion:
    """The :class:`GaussianDiffusion` a DDPM recipe trains with."""
    return GaussianDiffusion(make_beta_schedule(cfg.schedule, cfg.n_diffusion_steps), prediction="epsilon")


def _batches_from(data: torch.Tensor, device) -> Callable:
    data = data.to(device)

    def sample_batch(batch_size: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(data), (batch_size,), generator=generator, device=generator.device)
        return data[idx.to(data.device)]

    return sample_batch


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one of the book's models."""

    name: str
    config_cls: type
    description: str
    build_model: Callable
    training_data: Callable
    make_loss: Callable

    def train_config(self, cfg) -> TrainConfig:
        return _train_config(cfg)

    def default_path(self) -> str:
        return f"checkpoints/{self.name.replace('-', '_')}.pt"

    def command(self) -> str:
        return f"python -m tutorial_lib.train {self.name}"

    def make_config(self, **overrides):
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self.config_cls)}
        if unknown:
            raise ValueError(f"unknown config fields for {self.name}: {sorted(unknown)}; "
                             f"valid: {[f.name for f in dataclasses.fields(self.config_cls)]}")
        return self.config_cls(**overrides)


def _dsm_loss(cfg: RecapDSMConfig):
    return lambda model, x, g: dsm_loss(model, x, cfg.sigma_min, cfg.sigma_max, g)


def _ddpm_loss(cfg: RecapDDPMConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)
    return lambda model, x0, g: diffusion.training_loss(model, x0, g)


RECIPES: dict[str, Recipe] = {
    "recap-dsm": Recipe(
        name="recap-dsm", config_cls=RecapDSMConfig,
        description="noise-conditional score network, six-mode Gaussian mixture (Chapter 1)",
        build_model=lambda cfg: NoiseConditionalScoreNet(dim=2, hidden=cfg.hidden, depth=cfg.depth),
        training_data=lambda cfg: six_mode_mixture().sample(cfg.n_train, torch.Generator().manual_seed(cfg.seed)),
        make_loss=lambda cfg, device: _dsm_loss(cfg),
    ),
    "recap-ddpm": Recipe(
        name="recap-ddpm", config_cls=RecapDDPMConfig,
        description="epsilon-prediction DDPM on the 2D swiss roll (Chapter 1)",
        build_model=lambda cfg: TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth),
        training_data=lambda cfg: swiss_roll(cfg.n_train, torch.Generator().manual_seed(cfg.seed), cfg.data_noise),
        make_loss=_ddpm_loss,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {sorted(RECIPES)}")
    return RECIPES[name]
