"""The book's 2D diffusion models (Chapter 1 and the conditioning warm-up): their configs, networks, data and losses.

The recipes ``recap-dsm``, ``recap-ddpm``, ``recap-ddpm-swissroll`` and ``conditioning-toy-cfg``
(``recipes.RECIPES``) name the functions below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ddpm import GaussianDiffusion, make_beta_schedule
from .guidance import drop_condition
from ..nets.conditional_mlp import ConditionalTimeMLP
from ..nets.mlp import TimeMLP
from .score_matching import NoiseConditionalScoreNet, dsm_loss
from .toy_data import sample_dataset, six_mode_mixture

__all__ = ["RecapDSMConfig", "RecapDDPMConfig", "ToyCFGConfig", "diffusion_from_config"]


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


@dataclass(frozen=True)
class ToyCFGConfig:
    """A DDPM of the six-mode mixture (Chapter 1's data) conditioned on the mode, for classifier-free guidance.

    The condition is the one-hot mode ``(6,)`` and a keep flag, dropped with probability ``p_uncond``
    (``guidance.drop_condition``); schedule and network size are those of ``recap-ddpm``.
    """

    n_train: int = 20_000
    hidden: int = 128
    depth: int = 3
    n_diffusion_steps: int = 1000
    schedule: str = "linear"
    p_uncond: float = 0.2
    n_steps: int = 10_000
    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0


def diffusion_from_config(cfg: RecapDDPMConfig) -> GaussianDiffusion:
    """The :class:`GaussianDiffusion` a DDPM recipe trains with."""
    return GaussianDiffusion(make_beta_schedule(cfg.schedule, cfg.n_diffusion_steps), prediction="epsilon")


def build_dsm_net(cfg: RecapDSMConfig) -> NoiseConditionalScoreNet:
    return NoiseConditionalScoreNet(dim=2, hidden=cfg.hidden, depth=cfg.depth)


def dsm_data(cfg: RecapDSMConfig) -> torch.Tensor:
    return six_mode_mixture().sample(cfg.n_train, torch.Generator().manual_seed(cfg.seed))


def dsm_recipe_loss(cfg: RecapDSMConfig, device=None):
    return lambda model, x, g: dsm_loss(model, x, cfg.sigma_min, cfg.sigma_max, g)


def build_ddpm_net(cfg: RecapDDPMConfig) -> TimeMLP:
    return TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)


def ddpm_data(cfg: RecapDDPMConfig) -> torch.Tensor:
    return sample_dataset(cfg.dataset, cfg.n_train, torch.Generator().manual_seed(cfg.seed), cfg.data_noise)


def ddpm_loss(cfg: RecapDDPMConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)
    return lambda model, x0, g: diffusion.training_loss(model, x0, g)


def build_toy_cfg_net(cfg: ToyCFGConfig) -> ConditionalTimeMLP:
    return ConditionalTimeMLP(dim=2, cond_dim=7, hidden=cfg.hidden, depth=cfg.depth)


def toy_cfg_data(cfg: ToyCFGConfig) -> torch.Tensor:
    """Rows ``[x, y, mode]`` of the six-mode mixture at half size (``recap-ddpm``'s data)."""
    x, mode = six_mode_mixture(scale=0.5).sample(cfg.n_train, torch.Generator().manual_seed(cfg.seed), return_labels=True)
    return torch.cat([x, mode[:, None].float()], dim=1)


def toy_cfg_loss(cfg: ToyCFGConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)

    def loss(model, rows, generator):
        c = drop_condition(F.one_hot(rows[:, 2].long(), 6).float(), cfg.p_uncond, generator)
        return diffusion.training_loss(lambda x, t: model(x, t, c), rows[:, :2], generator)
    return loss
