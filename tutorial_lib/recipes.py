"""The models the book trains: each recipe is a frozen config, a model, its data and its loss.

A recipe's name is what ``python -m tutorial_lib.train NAME`` takes; its config is saved inside
the checkpoint, so a checkpoint always says how it was made.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .assets import verify_file
from .checkpoint import load_checkpoint

from .ddpm import GaussianDiffusion, make_beta_schedule
from .imitation import (ImitationConfig, bc_loss, build_bc, build_diffusion_net, diffusion_policy_loss,
                        imitation_data)
from .nets.mlp import TimeMLP
from .score_matching import NoiseConditionalScoreNet, dsm_loss
from .toy_data import sample_dataset, six_mode_mixture
from .training import TrainConfig, TrainResult, train
from .utils import get_device

__all__ = ["RecapDSMConfig", "RecapDDPMConfig", "ImitationConfig", "Recipe", "RECIPES", "get_recipe", "diffusion_from_config",
           "train_recipe", "load_pretrained"]


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
    """Epsilon-prediction DDPM on a 2D data set (Chapter 1): ``"six_modes"`` or ``"swiss_roll"``."""

    dataset: str = "six_modes"
    n_train: int = 20_000
    data_noise: float = 0.03
    hidden: int = 128
    depth: int = 3
    n_diffusion_steps: int = 1000
    schedule: str = "linear"
    n_steps: int = 40_000
    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0


def _train_config(cfg) -> TrainConfig:
    return TrainConfig(n_steps=cfg.n_steps, batch_size=cfg.batch_size, lr=cfg.lr, ema_decay=cfg.ema_decay,
                       seed=cfg.seed, checkpoint_every=max(1, min(2_000, cfg.n_steps)),
                       lr_schedule=getattr(cfg, "lr_schedule", "constant"))


def diffusion_from_config(cfg: RecapDDPMConfig) -> GaussianDiffusion:
    """The :class:`GaussianDiffusion` a DDPM recipe trains with."""
    return GaussianDiffusion(make_beta_schedule(cfg.schedule, cfg.n_diffusion_steps), prediction="epsilon")


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one of the book's models."""

    name: str
    config_cls: type
    description: str
    build_model: Callable
    training_data: Callable
    make_loss: Callable
    default_config: Callable | None = None

    def config(self, **overrides):
        """The recipe's default config, with ``overrides`` applied (unknown fields are named)."""
        base = self.default_config() if self.default_config is not None else self.config_cls()
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self.config_cls)}
        if unknown:
            raise ValueError(f"unknown config fields for {self.name}: {sorted(unknown)}; "
                             f"valid: {[f.name for f in dataclasses.fields(self.config_cls)]}")
        return dataclasses.replace(base, **overrides)

    def train_config(self, cfg) -> TrainConfig:
        return _train_config(cfg)

    def default_path(self) -> str:
        return f"checkpoints/{self.name.replace('-', '_')}.pt"

    def command(self) -> str:
        return f"python -m tutorial_lib.train {self.name}"


def _dsm_loss(cfg: RecapDSMConfig):
    return lambda model, x, g: dsm_loss(model, x, cfg.sigma_min, cfg.sigma_max, g)


def _ddpm_loss(cfg: RecapDDPMConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)
    return lambda model, x0, g: diffusion.training_loss(model, x0, g)


def _ddpm_recipe(name: str, description: str, dataset: str) -> Recipe:
    """A recap DDPM recipe: the same network and loss, trained on ``dataset``."""
    return Recipe(
        name=name, config_cls=RecapDDPMConfig, description=description,
        build_model=lambda cfg: TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth),
        training_data=lambda cfg: sample_dataset(cfg.dataset, cfg.n_train, torch.Generator().manual_seed(cfg.seed),
                                                 cfg.data_noise),
        make_loss=_ddpm_loss,
        default_config=lambda: RecapDDPMConfig(dataset=dataset),
    )


RECIPES: dict[str, Recipe] = {
    "recap-dsm": Recipe(
        name="recap-dsm", config_cls=RecapDSMConfig,
        description="noise-conditional score network, six-mode Gaussian mixture (Chapter 1)",
        build_model=lambda cfg: NoiseConditionalScoreNet(dim=2, hidden=cfg.hidden, depth=cfg.depth),
        training_data=lambda cfg: six_mode_mixture().sample(cfg.n_train, torch.Generator().manual_seed(cfg.seed)),
        make_loss=lambda cfg, device: _dsm_loss(cfg),
    ),
    "recap-ddpm": _ddpm_recipe("recap-ddpm", "epsilon-prediction DDPM on the six-mode mixture (Chapter 1)",
                               "six_modes"),
    "recap-ddpm-swissroll": _ddpm_recipe(
        "recap-ddpm-swissroll", "the same DDPM on the 2D swiss roll, a hard case for few-step sampling (Chapter 1)",
        "swiss_roll"),
    "motivation-bc": Recipe(
        name="motivation-bc", config_cls=ImitationConfig,
        description="behaviour cloning (MLP, squared loss) on 50 two-way obstacle demonstrations (Chapter 2)",
        build_model=build_bc, training_data=imitation_data,
        make_loss=lambda cfg, device: bc_loss(cfg.action_horizon),
    ),
    "motivation-diffusion-policy": Recipe(
        name="motivation-diffusion-policy", config_cls=ImitationConfig,
        description="diffusion policy (conditional DDPM over action chunks) on the same demonstrations (Chapter 2)",
        build_model=build_diffusion_net, training_data=imitation_data, make_loss=diffusion_policy_loss,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {sorted(RECIPES)}")
    return RECIPES[name]


def train_recipe(name: str, config=None, checkpoint_path: str | os.PathLike | None = None,
                 device=None, progress: bool = True) -> TrainResult:
    """Train recipe ``name`` (with its default config unless ``config`` is given).

    With ``checkpoint_path`` the run saves as it goes and resumes from an existing file.
    """
    recipe = get_recipe(name)
    cfg = config if config is not None else recipe.config()
    if not isinstance(cfg, recipe.config_cls):
        raise TypeError(f"{name} takes a {recipe.config_cls.__name__}, got {type(cfg).__name__}")
    device = get_device(device)
    torch.manual_seed(cfg.seed)  # network initialisation
    model = recipe.build_model(cfg)
    data = recipe.training_data(cfg).to(device)

    def sample_batch(batch_size, generator):
        idx = torch.randint(0, len(data), (batch_size,), generator=generator, device=generator.device)
        return data[idx]

    return train(model, recipe.make_loss(cfg, device), sample_batch, recipe.train_config(cfg), name=name,
                 recipe_config=cfg, checkpoint_path=checkpoint_path, device=device, progress=progress,
                 hint=f"re-create it with: {recipe.command()}")


def load_pretrained(name: str, device=None, ema: bool = True):
    """Load the shipped checkpoint of recipe ``name``; returns ``(model, checkpoint dict)``.

    The model is built from the config stored in the checkpoint, loaded with the EMA weights
    (``ema=True``) or the raw ones, put in eval mode and moved to ``device``.
    """
    recipe = get_recipe(name)
    path = verify_file(recipe.default_path())
    ckpt = load_checkpoint(path, name=name, hint=f"re-create it with: {recipe.command()}")
    cfg = recipe.config_cls(**ckpt["config"])
    model = recipe.build_model(cfg)
    model.load_state_dict(ckpt["ema_state"] if ema and ckpt["ema_state"] is not None else ckpt["model_state"])
    return model.to(get_device(device)).eval(), ckpt
