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
import torch.nn.functional as F

from .assets import verify_file
from .checkpoint import load_checkpoint
from .ddpm import GaussianDiffusion, make_beta_schedule
from .diffuser import diffuser_loss, make_diffusion
from .guidance import drop_condition
from .nets.conditional_mlp import ConditionalTimeMLP
from .maze_bc import MazeBCConfig, build_maze_bc, maze_bc_data, maze_bc_loss
from .maze_conditioning import (MazeCFGConfig, MazeValueConfig, build_cfg_net, build_value_net, maze_cfg_loss,
                                maze_value_loss, value_batches)
from .envs.maze_data import load_stream
from .imitation import (ImitationConfig, bc_loss, build_bc, build_diffusion_net, diffusion_policy_loss,
                        imitation_data)
from .nets.mlp import TimeMLP
from .nets.temporal_unet import TemporalUnet
from .compounding import (CompoundingConfig, build_dynamics_net, build_sequence_net, dynamics_data, dynamics_loss,
                          sequence_loss, sequence_windows)
from .policy import PushTPolicyConfig, bc_loss as pusht_bc_loss, build_bc_net, build_diffusion_net as pusht_net
from .policy import diffusion_policy_loss as pusht_dp_loss, pusht_data
from .score_matching import NoiseConditionalScoreNet, dsm_loss
from .toy_data import sample_dataset, six_mode_mixture
from .training import TrainConfig, TrainResult, train
from .trajectories import OBSERVATION_DIM, SPLITS, TRANSITION_DIM, TrajectoryWindows
from .utils import get_device

__all__ = ["RecapDSMConfig", "RecapDDPMConfig", "ToyCFGConfig", "DiffuserConfig", "ImitationConfig", "Recipe", "RECIPES",
           "PushTPolicyConfig", "CompoundingConfig", "get_recipe", "diffusion_from_config", "train_recipe", "load_pretrained", "load_recipe_model"]


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


def _toy_cfg_data(cfg: ToyCFGConfig) -> torch.Tensor:
    """Rows ``[x, y, mode]`` of the six-mode mixture at half size (``recap-ddpm``'s data)."""
    x, mode = six_mode_mixture(scale=0.5).sample(cfg.n_train, torch.Generator().manual_seed(cfg.seed), return_labels=True)
    return torch.cat([x, mode[:, None].float()], dim=1)


def _toy_cfg_loss(cfg: ToyCFGConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)

    def loss(model, rows, generator):
        c = drop_condition(F.one_hot(rows[:, 2].long(), 6).float(), cfg.p_uncond, generator)
        return diffusion.training_loss(lambda x, t: model(x, t, c), rows[:, :2], generator)
    return loss


@dataclass(frozen=True)
class DiffuserConfig:
    """Diffuser on a maze2d layout: temporal U-Net, x0-prediction, cosine schedule (Janner et al. 2022).

    Defaults are the paper's U-Maze settings (``config/maze2d.py`` of the reference code): horizon 128,
    stride 1, 64 diffusion steps, widths 32 x (1, 4, 8), batch 32, lr 2e-4, EMA 0.995, no gradient
    clipping. Differences: the paper trains 2M steps (we default to 200k); its batch of 32 is
    accumulated twice per update (``gradient_accumulate_every = 2``); its EMA is updated every 10
    steps after the first 2000, ours after every step. The data (``n_transitions`` of the waypoint
    expert, D4RL's size) is generated on first use into ``data/maze/`` and is not shipped.

    ``horizon`` counts the points of a plan (the network's input length) and ``stride`` the
    environment steps between them: a plan spans about ``horizon * stride`` steps. The book's
    recipes, trained on a 2-core CPU, plan at ``stride = 4`` with 4x fewer points and width 16
    (see ``RECIPES``); ``stride = 1`` with the paper's horizon is Diffuser's own setting.
    """

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    split: str = "goal_exits"
    horizon: int = 128
    stride: int = 1
    conditioning: str = "start_goal"
    mask_input: bool = False
    n_diffusion_steps: int = 64
    schedule: str = "cosine"
    dim: int = 32
    dim_mults: tuple = (1, 4, 8)
    n_steps: int = 200_000
    batch_size: int = 32
    lr: float = 2e-4
    ema_decay: float = 0.995
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"DiffuserConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.conditioning not in ("start_goal", "random"):
            raise ValueError(f"DiffuserConfig.conditioning must be 'start_goal' or 'random', got {self.conditioning!r}")
        if self.stride < 1:
            raise ValueError(f"DiffuserConfig.stride must be >= 1, got {self.stride}")
        multiple = 2 ** (len(self.dim_mults) - 1)
        if self.horizon % multiple:
            raise ValueError(f"DiffuserConfig.horizon = {self.horizon} must be a multiple of {multiple} "
                             f"for dim_mults={tuple(self.dim_mults)}")
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))


def _train_config(cfg) -> TrainConfig:
    return TrainConfig(n_steps=cfg.n_steps, batch_size=cfg.batch_size, lr=cfg.lr, ema_decay=cfg.ema_decay,
                       seed=cfg.seed, checkpoint_every=max(1, min(2_000, cfg.n_steps)),
                       lr_schedule=getattr(cfg, "lr_schedule", "constant"),
                       grad_clip=getattr(cfg, "grad_clip", 1.0))


def diffusion_from_config(cfg: RecapDDPMConfig) -> GaussianDiffusion:
    """The :class:`GaussianDiffusion` a DDPM recipe trains with."""
    return GaussianDiffusion(make_beta_schedule(cfg.schedule, cfg.n_diffusion_steps), prediction="epsilon")


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one of the book's models.

    ``training_data(cfg)`` returns a tensor whose rows are the samples, unless ``make_batches`` is
    given: then ``make_batches(cfg, data, device)`` returns ``sample_batch(batch_size, generator)``.
    ``extra(cfg, data)``, if given, returns what is saved in the checkpoint beside the weights.
    ``defaults`` overrides the config class's defaults for this recipe (several recipes may share
    one config class, e.g. Diffuser on the three mazes).
    """

    name: str
    config_cls: type
    description: str
    build_model: Callable
    training_data: Callable
    make_loss: Callable
    make_batches: Callable | None = None
    extra: Callable | None = None
    defaults: dict = dataclasses.field(default_factory=dict)

    def train_config(self, cfg) -> TrainConfig:
        return _train_config(cfg)

    def default_path(self) -> str:
        return f"checkpoints/{self.name.replace('-', '_')}.pt"

    def command(self) -> str:
        return f"python -m tutorial_lib.train {self.name}"

    def config(self, **overrides):
        """The recipe's config: the class defaults, then the recipe's ``defaults``, then ``overrides``."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self.config_cls)}
        if unknown:
            raise ValueError(f"unknown config fields for {self.name}: {sorted(unknown)}; "
                             f"valid: {[f.name for f in dataclasses.fields(self.config_cls)]}")
        return self.config_cls(**{**self.defaults, **overrides})


def _dsm_loss(cfg: RecapDSMConfig):
    return lambda model, x, g: dsm_loss(model, x, cfg.sigma_min, cfg.sigma_max, g)


def _ddpm_loss(cfg: RecapDDPMConfig, device):
    diffusion = diffusion_from_config(cfg).to(device)
    return lambda model, x0, g: diffusion.training_loss(model, x0, g)


def _ddpm_recipe(name: str, description: str, dataset: str) -> Recipe:
    """A recap DDPM recipe: the same network and loss, trained on ``dataset``."""
    return Recipe(
        name=name, config_cls=RecapDDPMConfig, description=description, defaults=dict(dataset=dataset),
        build_model=lambda cfg: TimeMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth),
        training_data=lambda cfg: sample_dataset(cfg.dataset, cfg.n_train, torch.Generator().manual_seed(cfg.seed),
                                                 cfg.data_noise),
        make_loss=_ddpm_loss,
    )


def _row_sampler(rows: torch.Tensor):
    """``sample_batch(batch_size, generator)`` drawing rows of ``rows`` uniformly with replacement."""
    def sample_batch(batch_size, generator):
        idx = torch.randint(0, len(rows), (batch_size,), generator=generator, device=generator.device)
        return rows[idx]
    return sample_batch


def _pusht_recipe(name: str, description: str, build_model, make_loss, defaults: dict) -> Recipe:
    """A Push-T policy: the demonstration windows as flat rows, the normalisers saved beside the weights."""
    return Recipe(
        name=name, config_cls=PushTPolicyConfig, description=description,
        build_model=build_model, training_data=pusht_data, make_loss=make_loss,
        make_batches=lambda cfg, data, device: _row_sampler(data.flat().to(device)),
        extra=lambda cfg, data: {"obs_normalizer": data.obs_normalizer.state_dict(),
                                 "action_normalizer": data.action_normalizer.state_dict()},
        defaults=defaults,
    )


def _dynamics_recipe(name: str, description: str, defaults: dict) -> Recipe:
    """A one-step model of the compounding study: batches of 256 consecutive pairs, lr 1e-3."""
    return Recipe(
        name=name, config_cls=CompoundingConfig, description=description,
        build_model=build_dynamics_net, training_data=dynamics_data, make_loss=dynamics_loss,
        make_batches=lambda cfg, data, device: _row_sampler(data.rows.to(device)),
        extra=lambda cfg, data: {"normalizer": data.normalizer.state_dict(), "delta_scale": data.delta_scale.tolist()},
        defaults=dict(batch_size=256, lr=1e-3, ema_decay=0.999, **defaults),
    )


def _sequence_recipe(name: str, description: str, defaults: dict) -> Recipe:
    """A sequence diffusion model of the compounding study (Diffuser's U-Net, actions and start inpainted)."""
    return Recipe(
        name=name, config_cls=CompoundingConfig, description=description,
        build_model=build_sequence_net, training_data=sequence_windows, make_loss=sequence_loss,
        make_batches=lambda cfg, windows, device: windows.to(device).sample_batch,
        extra=lambda cfg, windows: {"normalizer": windows.normalizer.state_dict()}, defaults=defaults,
    )


def _maze_windows(cfg: DiffuserConfig) -> TrajectoryWindows:
    data = load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed)
    return TrajectoryWindows.from_maze_data(data, cfg.horizon, split=cfg.split, stride=cfg.stride)


def _diffuser_loss(cfg: DiffuserConfig, device):
    diffusion = make_diffusion(cfg.n_diffusion_steps, cfg.schedule).to(device)
    return lambda model, x0, g: diffuser_loss(model, diffusion, x0, g, conditioning=cfg.conditioning)


def _diffuser_recipe(name: str, description: str, defaults: dict) -> Recipe:
    return Recipe(
        name=name, config_cls=DiffuserConfig, description=description, defaults=defaults,
        build_model=lambda cfg: TemporalUnet(TRANSITION_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults,
                                             mask_dim=OBSERVATION_DIM if cfg.mask_input else 0),
        training_data=_maze_windows, make_loss=_diffuser_loss,
        make_batches=lambda cfg, windows, device: windows.to(device).sample_batch,
        extra=lambda cfg, windows: {"normalizer": windows.normalizer.state_dict()},
    )


_CPU_DIFFUSER = dict(stride=4, dim=16, n_steps=40_000, conditioning="random", mask_input=True)
"""The maze Diffusers' departures from the paper, to train on a 2-core CPU: the paper's horizons
(128 / 256 / 384 steps) at every 4th step, width 16 instead of 32, 40k steps (30k on Large, to fit
a CPU session) instead of 2M, and
64 diffusion steps on every maze (the paper: 256 on Medium and Large); and two additions: training
conditions drawn at random (``diffuser.random_conditions``) so that via-points and early goals are
in the training distribution, and the mask of pinned entries as input channels
(``diffuser.condition_mask``), without which a network cannot tell a pinned state from a noisy one
when the pins vary."""


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
    "conditioning-toy-cfg": Recipe(
        name="conditioning-toy-cfg", config_cls=ToyCFGConfig,
        description="mode-conditioned DDPM of the six-mode mixture, condition dropout 0.2 (conditioning warm-up)",
        build_model=lambda cfg: ConditionalTimeMLP(dim=2, cond_dim=7, hidden=cfg.hidden, depth=cfg.depth),
        training_data=_toy_cfg_data, make_loss=_toy_cfg_loss,
    ),
    "maze-umaze-diffuser": _diffuser_recipe(
        "maze-umaze-diffuser", "Diffuser on U-Maze: 32 points at stride 4 (128 steps), T 64, width 16 (Diffuser chapter)",
        dict(layout="umaze", horizon=32, **_CPU_DIFFUSER)),
    "maze-medium-diffuser": _diffuser_recipe(
        "maze-medium-diffuser", "Diffuser on Medium: 64 points at stride 4 (256 steps), T 64, width 16 (Diffuser chapter)",
        dict(layout="medium", n_transitions=2_000_000, horizon=64, **{**_CPU_DIFFUSER, "n_steps": 90_000})),
    "maze-large-diffuser": _diffuser_recipe(
        "maze-large-diffuser", "Diffuser on Large: 96 points at stride 4 (384 steps), T 64, width 16 (Diffuser chapter)",
        dict(layout="large", n_transitions=4_000_000, horizon=96, **{**_CPU_DIFFUSER, "n_steps": 70_000})),
    "maze-medium-value": Recipe(
        name="maze-medium-value", config_cls=MazeValueConfig,
        description="value network J(tau_t, t) of the bonus return on noisy Medium windows, for guidance (Diffuser chapter)",
        build_model=build_value_net, training_data=_maze_windows, make_loss=maze_value_loss,
        make_batches=value_batches, extra=lambda cfg, windows: {"normalizer": windows.normalizer.state_dict()},
    ),
    "maze-umaze-cfg": Recipe(
        name="maze-umaze-cfg", config_cls=MazeCFGConfig,
        description="goal-conditioned trajectory diffusion (FiLM U-Net, condition dropout 0.2) on U-Maze, for "
                    "classifier-free guidance (Diffuser chapter)",
        build_model=build_cfg_net, training_data=_maze_windows,
        make_loss=maze_cfg_loss,
        make_batches=lambda cfg, windows, device: windows.to(device).sample_batch,
        extra=lambda cfg, windows: {"normalizer": windows.normalizer.state_dict()},
    ),
    **{f"maze-{layout}-bc": Recipe(
        name=f"maze-{layout}-bc", config_cls=MazeBCConfig, defaults=dict(layout=layout, n_transitions=n),
        description=f"goal-conditioned behaviour cloning (MLP) on the {layout} expert stream (Diffuser chapter)",
        build_model=build_maze_bc, training_data=maze_bc_data, make_loss=lambda cfg, device: maze_bc_loss,
    ) for layout, n in (("umaze", 1_000_000), ("medium", 2_000_000), ("large", 4_000_000))},
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
    "motivation-dynamics-mlp": _dynamics_recipe(
        "motivation-dynamics-mlp",
        "one-step dynamics model (MLP) of the U-Maze expert data, for the compounding-error study (Chapter 2)",
        dict(n_steps=20_000)),
    "motivation-sequence-diffusion": _sequence_recipe(
        "motivation-sequence-diffusion",
        "temporal U-Net diffusion over 128-step U-Maze windows, actions and start inpainted (Chapter 2)", {}),
    "motivation-pusht-dynamics-mlp": _dynamics_recipe(
        "motivation-pusht-dynamics-mlp",
        "one-step dynamics model (MLP) of Push-T play (2800 open-loop episodes of random pushes) (Chapter 2)",
        dict(task="pusht", horizon=64, n_test_episodes=200, n_steps=100_000)),
    "motivation-pusht-sequence-diffusion": _sequence_recipe(
        "motivation-pusht-sequence-diffusion",
        "temporal U-Net diffusion of displacements over 64-step windows of Push-T play, actions and start "
        "inpainted (Chapter 2)",
        dict(task="pusht", horizon=64, n_test_episodes=200, relative=True, n_steps=12_000, batch_size=64)),
    "pusht-diffusion-policy": _pusht_recipe(
        "pusht-diffusion-policy",
        "Diffusion Policy (FiLM 1D U-Net, To 2, H 16, Ta 8) on the Push-T demonstrations and their mirror "
        "images (Chapter 3)",
        pusht_net, pusht_dp_loss, dict(mirror=True)),
    "pusht-bc": _pusht_recipe(
        "pusht-bc", "behaviour cloning (MLP, squared loss) of the same action chunks (Chapter 3)",
        build_bc_net, pusht_bc_loss, dict(n_steps=20_000, lr=1e-3, mirror=True)),
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
    data = recipe.training_data(cfg)
    if recipe.make_batches is not None:
        sample_batch = recipe.make_batches(cfg, data, device)
    else:
        data = data.to(device)
        sample_batch = _row_sampler(data)

    extra = recipe.extra(cfg, data) if recipe.extra is not None else None
    return train(model, recipe.make_loss(cfg, device), sample_batch, recipe.train_config(cfg), name=name,
                 recipe_config=cfg, checkpoint_path=checkpoint_path, device=device, progress=progress,
                 hint=f"re-create it with: {recipe.command()}", extra=extra)


def load_recipe_model(name: str, path=None, device=None, ema: bool = True):
    """``(model, checkpoint, config)`` of recipe ``name``: the shipped checkpoint (``path=None``,
    checked against the manifest) or the file at ``path``; EMA weights unless ``ema=False``, eval mode."""
    recipe = get_recipe(name)
    if path is None:
        model, ckpt = load_pretrained(name, device=device, ema=ema)
    else:
        ckpt = load_checkpoint(path, name=name, hint=f"re-create it with: {recipe.command()}")
        model = recipe.build_model(recipe.config_cls(**ckpt["config"]))
        model.load_state_dict(ckpt["ema_state"] if ema and ckpt["ema_state"] is not None else ckpt["model_state"])
        model = model.to(get_device(device)).eval()
    return model, ckpt, recipe.config_cls(**ckpt["config"])


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
