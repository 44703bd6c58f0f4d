"""The models the book trains: each recipe is a frozen config, a model, its data and its loss.

A recipe's name is what ``python -m tutorial_lib.train NAME`` takes; its config is saved inside
the checkpoint, so a checkpoint always says how it was made.

The registry names each recipe's config class and functions by ``"module:name"`` strings
(:class:`Ref`), imported when first used: importing this module imports none of the modules that
define the models, so those modules can load their checkpoints from here without a cycle.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .assets import verify_file
from .checkpoint import load_checkpoint
from .training import TrainConfig, TrainResult, train
from .utils import get_device

__all__ = ["Ref", "Recipe", "RECIPES", "get_recipe", "train_recipe", "load_pretrained", "load_recipe_model",
           "row_sampler", "window_batches", "normalizer_extra"]


@dataclass(frozen=True)
class Ref:
    """A class or function named by ``"package.module:name"``, imported when it is first used.

    Calling a ``Ref`` calls what it names, so ``recipe.build_model(cfg)`` reads as before.
    """

    path: str

    def resolve(self):
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)


def _resolve(value):
    return value.resolve() if isinstance(value, Ref) else value


def _train_config(cfg) -> TrainConfig:
    return TrainConfig(n_steps=cfg.n_steps, batch_size=cfg.batch_size, lr=cfg.lr, ema_decay=cfg.ema_decay,
                       seed=cfg.seed, checkpoint_every=max(1, min(2_000, cfg.n_steps)),
                       lr_schedule=getattr(cfg, "lr_schedule", "constant"),
                       grad_clip=getattr(cfg, "grad_clip", 1.0))


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one of the book's models.

    ``training_data(cfg)`` returns a tensor whose rows are the samples, unless ``make_batches`` is
    given: then ``make_batches(cfg, data, device)`` returns ``sample_batch(batch_size, generator)``.
    ``extra(cfg, data)``, if given, returns what is saved in the checkpoint beside the weights.
    ``defaults`` overrides the config class's defaults for this recipe (several recipes may share
    one config class, e.g. Diffuser on the three mazes). ``config_class`` and the functions may be
    given as :class:`Ref` strings, resolved when used; ``config_cls`` is the class itself.
    """

    name: str
    config_class: type | Ref
    description: str
    build_model: Callable
    training_data: Callable
    make_loss: Callable
    make_batches: Callable | None = None
    extra: Callable | None = None
    defaults: dict = dataclasses.field(default_factory=dict)

    @property
    def config_cls(self) -> type:
        return _resolve(self.config_class)

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


def row_sampler(rows: torch.Tensor):
    """``sample_batch(batch_size, generator)`` drawing rows of ``rows`` uniformly with replacement."""
    def sample_batch(batch_size, generator):
        idx = torch.randint(0, len(rows), (batch_size,), generator=generator, device=generator.device)
        return rows[idx]
    return sample_batch


def window_batches(cfg, windows, device):
    """Batches of trajectory windows (a ``TrajectoryWindows``), on ``device``."""
    return windows.to(device).sample_batch


def normalizer_extra(cfg, data) -> dict:
    """What a model of normalised windows keeps beside its weights: the normaliser."""
    return {"normalizer": data.normalizer.state_dict()}


_TOY = "tutorial_lib.diffusion.toy_models"
_DIFFUSER = "tutorial_lib.agents.diffuser"
_CONDITIONING = "tutorial_lib.experiments.maze_conditioning"
_MAZE_BC = "tutorial_lib.agents.maze_bc"
_IMITATION = "tutorial_lib.experiments.imitation"
_COMPOUNDING = "tutorial_lib.experiments.compounding"
_POLICY = "tutorial_lib.agents.pusht_policy"
_DISTILLED = "tutorial_lib.agents.pusht_distilled"
_STATES = "tutorial_lib.agents.state_diffuser"
_INVERSE = "tutorial_lib.agents.inverse_dynamics"
_ACTIONS = "tutorial_lib.agents.maze_action_policy"


def _ddpm_recipe(name: str, description: str, dataset: str) -> Recipe:
    """A recap DDPM recipe: the same network and loss, trained on ``dataset``."""
    return Recipe(
        name=name, config_class=Ref(f"{_TOY}:RecapDDPMConfig"), description=description, defaults=dict(dataset=dataset),
        build_model=Ref(f"{_TOY}:build_ddpm_net"), training_data=Ref(f"{_TOY}:ddpm_data"),
        make_loss=Ref(f"{_TOY}:ddpm_loss"),
    )


def _pusht_recipe(name: str, description: str, build_model: str, make_loss: str, defaults: dict) -> Recipe:
    """A Push-T policy: the demonstration windows as flat rows, the normalisers saved beside the weights."""
    return Recipe(
        name=name, config_class=Ref(f"{_POLICY}:PushTPolicyConfig"), description=description,
        build_model=Ref(f"{_POLICY}:{build_model}"), training_data=Ref(f"{_POLICY}:pusht_data"),
        make_loss=Ref(f"{_POLICY}:{make_loss}"), make_batches=Ref(f"{_POLICY}:pusht_batches"),
        extra=Ref(f"{_POLICY}:pusht_extra"), defaults=defaults,
    )


def _dynamics_recipe(name: str, description: str, defaults: dict) -> Recipe:
    """A one-step model of the compounding study: batches of 256 consecutive pairs, lr 1e-3."""
    return Recipe(
        name=name, config_class=Ref(f"{_COMPOUNDING}:CompoundingConfig"), description=description,
        build_model=Ref(f"{_COMPOUNDING}:build_dynamics_net"), training_data=Ref(f"{_COMPOUNDING}:dynamics_data"),
        make_loss=Ref(f"{_COMPOUNDING}:dynamics_loss"), make_batches=Ref(f"{_COMPOUNDING}:dynamics_batches"),
        extra=Ref(f"{_COMPOUNDING}:dynamics_extra"),
        defaults=dict(batch_size=256, lr=1e-3, ema_decay=0.999, **defaults),
    )


def _sequence_recipe(name: str, description: str, defaults: dict) -> Recipe:
    """A sequence diffusion model of the compounding study (Diffuser's U-Net, actions and start inpainted)."""
    return Recipe(
        name=name, config_class=Ref(f"{_COMPOUNDING}:CompoundingConfig"), description=description,
        build_model=Ref(f"{_COMPOUNDING}:build_sequence_net"), training_data=Ref(f"{_COMPOUNDING}:sequence_windows"),
        make_loss=Ref(f"{_COMPOUNDING}:sequence_loss"), make_batches=window_batches, extra=normalizer_extra,
        defaults=defaults,
    )


def _diffuser_recipe(name: str, description: str, defaults: dict) -> Recipe:
    return Recipe(
        name=name, config_class=Ref(f"{_DIFFUSER}:DiffuserConfig"), description=description, defaults=defaults,
        build_model=Ref(f"{_DIFFUSER}:build_diffuser_net"), training_data=Ref(f"{_DIFFUSER}:maze_windows"),
        make_loss=Ref(f"{_DIFFUSER}:diffuser_recipe_loss"), make_batches=window_batches, extra=normalizer_extra,
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
        name="recap-dsm", config_class=Ref(f"{_TOY}:RecapDSMConfig"),
        description="noise-conditional score network, six-mode Gaussian mixture (Chapter 1)",
        build_model=Ref(f"{_TOY}:build_dsm_net"), training_data=Ref(f"{_TOY}:dsm_data"),
        make_loss=Ref(f"{_TOY}:dsm_recipe_loss"),
    ),
    "recap-ddpm": _ddpm_recipe("recap-ddpm", "epsilon-prediction DDPM on the six-mode mixture (Chapter 1)",
                               "six_modes"),
    "recap-ddpm-swissroll": _ddpm_recipe(
        "recap-ddpm-swissroll", "the same DDPM on the 2D swiss roll, a hard case for few-step sampling (Chapter 1)",
        "swiss_roll"),
    "conditioning-toy-cfg": Recipe(
        name="conditioning-toy-cfg", config_class=Ref(f"{_TOY}:ToyCFGConfig"),
        description="mode-conditioned DDPM of the six-mode mixture, condition dropout 0.2 (conditioning warm-up)",
        build_model=Ref(f"{_TOY}:build_toy_cfg_net"), training_data=Ref(f"{_TOY}:toy_cfg_data"),
        make_loss=Ref(f"{_TOY}:toy_cfg_loss"),
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
        name="maze-medium-value", config_class=Ref(f"{_CONDITIONING}:MazeValueConfig"),
        description="value network J(tau_t, t) of the bonus return on noisy Medium windows, for guidance (Diffuser chapter)",
        build_model=Ref(f"{_CONDITIONING}:build_value_net"), training_data=Ref(f"{_DIFFUSER}:maze_windows"),
        make_loss=Ref(f"{_CONDITIONING}:maze_value_loss"), make_batches=Ref(f"{_CONDITIONING}:value_batches"),
        extra=normalizer_extra,
    ),
    "maze-umaze-cfg": Recipe(
        name="maze-umaze-cfg", config_class=Ref(f"{_CONDITIONING}:MazeCFGConfig"),
        description="goal-conditioned trajectory diffusion (FiLM U-Net, condition dropout 0.2) on U-Maze, for "
                    "classifier-free guidance (Diffuser chapter)",
        build_model=Ref(f"{_CONDITIONING}:build_cfg_net"), training_data=Ref(f"{_DIFFUSER}:maze_windows"),
        make_loss=Ref(f"{_CONDITIONING}:maze_cfg_loss"), make_batches=window_batches, extra=normalizer_extra,
    ),
    **{f"maze-{layout}-bc": Recipe(
        name=f"maze-{layout}-bc", config_class=Ref(f"{_MAZE_BC}:MazeBCConfig"), defaults=dict(layout=layout, n_transitions=n),
        description=f"goal-conditioned behaviour cloning (MLP) on the {layout} expert stream (Diffuser chapter)",
        build_model=Ref(f"{_MAZE_BC}:build_maze_bc"), training_data=Ref(f"{_MAZE_BC}:maze_bc_data"),
        make_loss=Ref(f"{_MAZE_BC}:maze_bc_recipe_loss"),
    ) for layout, n in (("umaze", 1_000_000), ("medium", 2_000_000), ("large", 4_000_000))},
    "motivation-bc": Recipe(
        name="motivation-bc", config_class=Ref(f"{_IMITATION}:ImitationConfig"),
        description="behaviour cloning (MLP, squared loss) on 50 two-way obstacle demonstrations (Chapter 2)",
        build_model=Ref(f"{_IMITATION}:build_bc"), training_data=Ref(f"{_IMITATION}:imitation_data"),
        make_loss=Ref(f"{_IMITATION}:bc_recipe_loss"),
    ),
    "motivation-diffusion-policy": Recipe(
        name="motivation-diffusion-policy", config_class=Ref(f"{_IMITATION}:ImitationConfig"),
        description="diffusion policy (conditional DDPM over action chunks) on the same demonstrations (Chapter 2)",
        build_model=Ref(f"{_IMITATION}:build_diffusion_net"), training_data=Ref(f"{_IMITATION}:imitation_data"),
        make_loss=Ref(f"{_IMITATION}:diffusion_policy_loss"),
    ),
    "motivation-dynamics-mlp": _dynamics_recipe(
        "motivation-dynamics-mlp",
        "one-step dynamics model (MLP) of the U-Maze expert data, for the compounding-error study (Chapter 2)",
        dict(n_steps=20_000)),
    "motivation-dynamics-mlp-10k": _dynamics_recipe(
        "motivation-dynamics-mlp-10k",
        "one-step dynamics model (MLP) of the first 1 % of the U-Maze expert data (10k transitions), for the "
        "model-planning sweep (Chapter 2)",
        dict(n_transitions=10_000, n_steps=20_000)),
    "motivation-dynamics-mlp-100k": _dynamics_recipe(
        "motivation-dynamics-mlp-100k",
        "one-step dynamics model (MLP) of the first 10 % of the U-Maze expert data (100k transitions), for the "
        "model-planning sweep (Chapter 2)",
        dict(n_transitions=100_000, n_steps=20_000)),
    **{f"motivation-dynamics-mlp-noise{round(100 * sigma)}": _dynamics_recipe(
        f"motivation-dynamics-mlp-noise{round(100 * sigma)}",
        f"one-step dynamics model (MLP) of the U-Maze expert stream recorded with process noise (a velocity kick "
        f"of std {sigma} m/s per step), for the model-planning noise sweep (Chapter 2)",
        dict(dynamics_noise=sigma, n_steps=20_000)) for sigma in (0.01, 0.03, 0.1)},
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
        "build_diffusion_net", "diffusion_policy_loss", dict(mirror=True)),
    "pusht-diffusion-policy-no-mirror": _pusht_recipe(
        "pusht-diffusion-policy-no-mirror",
        "the same Diffusion Policy on the demonstrations alone, without their mirror images (Chapter 3 exercise)",
        "build_diffusion_net", "diffusion_policy_loss", dict(mirror=False)),
    "pusht-diffusion-policy-obs1": _pusht_recipe(
        "pusht-diffusion-policy-obs1",
        "the same Diffusion Policy seeing one observation (To 1, actions chunk[0:8]) instead of two "
        "(Chapter 3 exercise)",
        "build_diffusion_net", "diffusion_policy_loss", dict(mirror=True, n_obs_steps=1)),
    "pusht-bc": _pusht_recipe(
        "pusht-bc", "behaviour cloning (MLP, squared loss) of the same action chunks (Chapter 3)",
        "build_bc_net", "bc_loss", dict(n_steps=20_000, lr=1e-3, mirror=True)),
    "pusht-distilled-policy": Recipe(
        name="pusht-distilled-policy", config_class=Ref(f"{_DISTILLED}:DistilledPolicyConfig"),
        description="one-step student of the Push-T diffusion policy: the teacher's DDIM map from noise to chunk, "
                    "distilled by regression (Limitations: compute)",
        build_model=Ref(f"{_DISTILLED}:build_student"), training_data=Ref(f"{_DISTILLED}:distillation_data"),
        make_loss=Ref(f"{_DISTILLED}:distillation_loss"), extra=Ref(f"{_DISTILLED}:distilled_extra"),
    ),
    "maze-umaze-states": Recipe(
        name="maze-umaze-states", config_class=Ref(f"{_STATES}:StateDiffuserConfig"),
        description="states-only diffusion (FiLM U-Net, 32 points at stride 4), goal by classifier-free guidance, "
                    "on U-Maze (Literature: what is diffused, Decision Diffuser)",
        build_model=Ref(f"{_STATES}:build_state_net"), training_data=Ref(f"{_STATES}:state_data"),
        make_loss=Ref(f"{_STATES}:state_recipe_loss"), make_batches=Ref(f"{_STATES}:state_batches"),
        extra=Ref(f"{_STATES}:state_extra"),
    ),
    "maze-umaze-inverse-dynamics": Recipe(
        name="maze-umaze-inverse-dynamics", config_class=Ref(f"{_INVERSE}:InverseDynamicsConfig"),
        description="inverse dynamics a_t = f(s_t, s_t+4) (MLP) on the U-Maze expert stream, for the states-only "
                    "planner (Literature: what is diffused)",
        build_model=Ref(f"{_INVERSE}:build_inverse_dynamics"), training_data=Ref(f"{_INVERSE}:inverse_dynamics_data"),
        make_loss=Ref(f"{_INVERSE}:inverse_dynamics_loss"),
    ),
    "maze-umaze-action-policy": Recipe(
        name="maze-umaze-action-policy", config_class=Ref(f"{_ACTIONS}:MazeActionPolicyConfig"),
        description="goal-conditioned Diffusion Policy (FiLM 1D U-Net, To 2, H 16, Ta 8) on the U-Maze expert stream "
                    "(Literature: what is diffused)",
        build_model=Ref(f"{_ACTIONS}:build_action_net"), training_data=Ref(f"{_ACTIONS}:action_data"),
        make_loss=Ref(f"{_ACTIONS}:action_policy_loss"), make_batches=Ref(f"{_ACTIONS}:action_batches"),
        extra=Ref(f"{_ACTIONS}:action_extra"),
    ),
    "literature-hybrid-prior": Recipe(
        name="literature-hybrid-prior", config_class=Ref("tutorial_lib.experiments.literature_hybrid:HybridPriorConfig"),
        description="trajectory diffusion prior (TemporalUnet, width 16) of 3000 optimiser solutions in the Medium "
                    "maze, start and goal inpainted (Literature: hybrid, Motion Planning Diffusion)",
        build_model=Ref("tutorial_lib.experiments.literature_hybrid:build_prior_net"),
        training_data=Ref("tutorial_lib.experiments.literature_hybrid:prior_data"),
        make_loss=Ref("tutorial_lib.experiments.literature_hybrid:prior_loss"),
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {sorted(RECIPES)}")
    return RECIPES[name]


def train_recipe(name: str, config=None, checkpoint_path: str | os.PathLike | None = None,
                 device=None, progress: bool = True, precision: str = "fp32",
                 checkpoint_every: int | None = None) -> TrainResult:
    """Train recipe ``name`` (with its default config unless ``config`` is given).

    With ``checkpoint_path`` the run saves as it goes and resumes from an existing file.
    ``precision`` is passed to :func:`~tutorial_lib.core.training.train` (``"fp32"``, ``"bf16"``,
    ``"fp16"``). ``checkpoint_every`` overrides the steps between checkpoints (default: 2000, or
    ``n_steps`` if fewer). Under torchrun, call :func:`~tutorial_lib.core.distributed.init_from_environment`
    first (``python -m tutorial_lib.train`` does): the run is then data-parallel.
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
        sample_batch = row_sampler(data)

    extra = recipe.extra(cfg, data) if recipe.extra is not None else None
    train_config = recipe.train_config(cfg)
    if checkpoint_every is not None:
        train_config = dataclasses.replace(train_config, checkpoint_every=int(checkpoint_every))
    return train(model, recipe.make_loss(cfg, device), sample_batch, train_config, name=name,
                 recipe_config=cfg, checkpoint_path=checkpoint_path, device=device, progress=progress,
                 hint=f"re-create it with: {recipe.command()}", extra=extra, precision=precision)


def load_recipe_model(name: str, path=None, device=None, ema: bool = True):
    """``(model, checkpoint, config)`` of recipe ``name``: the shipped checkpoint (``path=None``,
    checked against the manifest) or the file at ``path``. The model is built from the config stored
    in the checkpoint, loaded with the EMA weights (``ema=True``) or the raw ones, in eval mode."""
    recipe = get_recipe(name)
    file = verify_file(recipe.default_path()) if path is None else path
    ckpt = load_checkpoint(file, name=name, hint=f"re-create it with: {recipe.command()}")
    cfg = recipe.config_cls(**ckpt["config"])
    model = recipe.build_model(cfg)
    model.load_state_dict(ckpt["ema_state"] if ema and ckpt["ema_state"] is not None else ckpt["model_state"])
    return model.to(get_device(device)).eval(), ckpt, cfg


def load_pretrained(name: str, device=None, ema: bool = True):
    """The shipped checkpoint of recipe ``name``, loaded: ``(model, checkpoint dict)`` (see ``load_recipe_model``)."""
    model, ckpt, _ = load_recipe_model(name, device=device, ema=ema)
    return model, ckpt
