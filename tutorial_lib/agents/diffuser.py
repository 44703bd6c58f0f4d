"""Diffuser (Janner et al. 2022): plan by sampling whole trajectories, condition by inpainting.

A diffusion model over trajectory windows ``x: (B, H, D)`` (layout ``x[:, t] = [a_t, o_t]``, see
``trajectories``) is trained to predict the clean window ``x_0`` (not the noise) under a cosine
schedule. A plan from state ``s`` to goal ``g`` is a sample conditioned by *inpainting*: the known
states are written into the trajectory,

    x[:, 0, obs] = s,   x[:, H - 1, obs] = g   (normalised),

in the initial noise ``x_T`` and again after every denoising step, so the network only ever fills in
the rest (Janner et al. 2022, Algorithm 1; ``apply_conditioning``). Training does the
same: the noisy window and the network's estimate get the window's own first and last states.

The planner that samples such plans and follows them is ``diffuser_planner.DiffuserPlanner``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion.ddpm import GaussianDiffusion, make_beta_schedule
from ..diffusion.guidance import drop_condition
from ..envs.maze_data import load_stream
from ..nets.temporal_unet import TemporalUnet
from .trajectories import ACTION_DIM, OBSERVATION_DIM, SPLITS, TRANSITION_DIM, LimitsNormalizer, TrajectoryWindows

__all__ = ["apply_conditioning", "condition_mask", "with_mask", "start_goal_conditions", "random_conditions", "make_diffusion", "diffuser_loss", "cfg_inpainting_loss", "sample_plans",
           "DiffuserConfig", "maze_windows", "load_diffuser"]


def apply_conditioning(x: torch.Tensor, conditions: dict, action_dim: int = ACTION_DIM) -> torch.Tensor:
    """Inpaint known states: ``x[:, t, action_dim:] = conditions[t]`` for every time index ``t``.

    Args:
        x: ``(B, H, D)`` trajectories ``[a_t, o_t]`` (normalised).
        conditions: ``{t: value}`` with ``t`` an int in ``[-H, H)`` (e.g. 0 the start, ``H - 1`` the goal,
            others via-points) and ``value`` the normalised observation, ``(D - action_dim,)`` or
            ``(B, D - action_dim)``. A NaN entry leaves that coordinate free, e.g. a goal position
            with free velocity ``(gx, gy, nan, nan)``, or a condition that holds for some samples only.
    Returns:
        A copy of ``x`` with those entries replaced (actions are never conditioned).
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, H, D), got {tuple(x.shape)}")
    B, H, D = x.shape
    obs_dim = D - action_dim
    out = x.clone()
    for t, value in conditions.items():
        t = int(t)
        if not -H <= t < H:
            raise ValueError(f"condition time index {t} lies outside the horizon H = {H}; use 0 .. {H - 1}")
        value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if value.shape not in ((obs_dim,), (B, obs_dim)):
            raise ValueError(f"condition at t = {t} must be an observation of shape ({obs_dim},) or ({B}, {obs_dim}) "
                             f"(normalised), got {tuple(value.shape)}")
        known = ~torch.isnan(value)
        out[:, t, action_dim:] = torch.where(known, value, out[:, t, action_dim:])
    return out


def condition_mask(conditions: dict, shape: tuple, action_dim: int = ACTION_DIM, device=None) -> torch.Tensor:
    """Which observation entries ``conditions`` pin: ``(B, H, D - action_dim)`` of 0.0 / 1.0.

    1 where ``apply_conditioning`` writes a value (not NaN), 0 elsewhere. A network built with
    ``mask_dim = D - action_dim`` gets it as extra input channels (``with_mask``), so it knows
    which entries are data and which are noise; a network without them must guess.
    """
    B, H, D = shape
    mask = torch.zeros(B, H, D - action_dim, device=device)
    for t, value in conditions.items():
        value = torch.as_tensor(value, device=device)
        mask[:, int(t)] = (~torch.isnan(value)).float().expand(B, D - action_dim)
    return mask


def with_mask(model, conditions: dict, shape: tuple, action_dim: int = ACTION_DIM, device=None):
    """``f(x, t)`` for the sampler: ``model`` itself, or, if it has ``mask_dim > 0``,
    ``model([x, condition_mask(conditions)], t)``."""
    if not getattr(model, "mask_dim", 0):
        return model
    mask = condition_mask(conditions, shape, action_dim, device)
    return lambda x, t: model(torch.cat([x, mask], dim=-1), t)


def start_goal_conditions(x0: torch.Tensor, action_dim: int = ACTION_DIM) -> dict:
    """The conditions Diffuser trains with (``GoalDataset``): the window's first and last states.

    ``x0: (B, H, D)``  ->  ``{0: (B, obs), H - 1: (B, obs)}``.
    """
    return {0: x0[:, 0, action_dim:], x0.shape[1] - 1: x0[:, -1, action_dim:]}


def random_conditions(x0: torch.Tensor, generator: torch.Generator | None = None, p_goal: float = 0.5,
                      p_position: float = 0.5, action_dim: int = ACTION_DIM, n_position: int = 2) -> dict:
    """Training conditions that cover what the planner asks at test time, drawn per window.

    Every window keeps its first state (the plan starts where the agent is). Independently, with
    probability ``p_goal`` its last state is pinned (Diffuser's goal), and with probability
    ``p_position`` the *position* of a state at a uniformly random index ``k in [1, H - 1]``
    (velocity free): the shape of a via-point, or of a goal to reach by step ``k``. Entries not
    pinned are NaN (see ``apply_conditioning``). Diffuser itself trains with start and goal only
    (``start_goal_conditions``); a model trained so cannot be asked for a via-point or an earlier
    arrival without leaving its training distribution.

    ``x0: (B, H, D)``  ->  ``{0: (B, obs), H - 1: (B, obs), k: (B, obs) for each k drawn}``.
    """
    B, H, D = x0.shape
    obs = x0[:, :, action_dim:]
    nan = torch.full_like(obs[:, 0], float("nan"))
    u = torch.rand(B, 2, generator=generator, device=x0.device)
    conditions = {0: obs[:, 0], H - 1: torch.where(u[:, :1] < p_goal, obs[:, -1], nan)}
    k = torch.randint(1, H, (B,), generator=generator, device=x0.device)
    pos = torch.where(u[:, 1:] < p_position, obs[torch.arange(B, device=x0.device), k], nan)
    pos[:, n_position:] = float("nan")
    for t in torch.unique(k).tolist():
        rows = k == t
        value = conditions.get(t, nan.clone()).clone()
        value[rows] = torch.where(torch.isnan(pos[rows]), value[rows], pos[rows])
        conditions[t] = value
    return conditions


def make_diffusion(n_diffusion_steps: int, schedule: str = "cosine") -> GaussianDiffusion:
    """Diffuser's process: cosine schedule, the network predicts ``x_0``, estimates clipped to ``[-1, 1]``."""
    return GaussianDiffusion(make_beta_schedule(schedule, n_diffusion_steps), prediction="x0", clip_denoised=1.0)


def cfg_inpainting_loss(model, diffusion: GaussianDiffusion, x0: torch.Tensor, conditions: dict, cond: torch.Tensor,
                        p_uncond: float, generator: torch.Generator | None = None,
                        action_dim: int = ACTION_DIM) -> torch.Tensor:
    """Diffuser's loss with ``conditions`` inpainted and ``cond`` a FiLM condition for classifier-free guidance.

    ``model(x, t, c)``; ``x0: (B, H, D)`` normalised windows; ``cond: (B, K)`` replaced by the null token with
    probability ``p_uncond`` (``guidance.drop_condition``); ``conditions`` as for :func:`apply_conditioning`.
    """
    c = drop_condition(cond, p_uncond, generator)

    def condition(x):
        return apply_conditioning(x, conditions, action_dim=action_dim)
    return diffusion.training_loss(lambda x, t: condition(model(x, t, c)), x0, generator, condition=condition)


def diffuser_loss(model, diffusion: GaussianDiffusion, x0: torch.Tensor, generator: torch.Generator | None = None,
                  action_dim: int = ACTION_DIM, conditioning: str = "start_goal") -> torch.Tensor:
    """``E || x_0 - c(f(c(x_t), t)) ||^2`` with ``c`` inpainting some of the window's own states.

    As in ``diffuser/models/diffusion.py`` (``p_losses``): the condition is applied to the noisy
    window before the network sees it and to the network's estimate, so the known entries cost
    nothing and the loss is spent on the rest. ``x0: (B, H, D)`` normalised windows.
    ``conditioning``: ``"start_goal"`` (Diffuser's: first and last state) or ``"random"``
    (``random_conditions``: the start, and a goal and a via-point position each half the time).
    """
    if conditioning == "start_goal":
        conditions = start_goal_conditions(x0, action_dim)
    elif conditioning == "random":
        conditions = random_conditions(x0, generator, action_dim=action_dim)
    else:
        raise ValueError(f"conditioning must be 'start_goal' or 'random', got {conditioning!r}")

    def condition(x):
        return apply_conditioning(x, conditions, action_dim)

    net = with_mask(model, conditions, tuple(x0.shape), action_dim, x0.device)
    return diffusion.training_loss(lambda x, t: condition(net(x, t)), x0, generator, condition=condition)


@torch.no_grad()
def sample_plans(model, diffusion: GaussianDiffusion, conditions: dict, shape: tuple,
                 ddim_steps: int | None = None, eta: float = 0.0, generator: torch.Generator | None = None,
                 action_dim: int = ACTION_DIM, return_trajectory: bool = False,
                 x_start: torch.Tensor | None = None, t_start: int | None = None) -> torch.Tensor:
    """Sample trajectories ``(B, H, D)`` (normalised) with the conditions inpainted at every step.

    ``ddim_steps=None`` runs DDPM through all ``n_diffusion_steps`` (as Diffuser does); an int runs DDIM
    (``eta``) on that many steps. With ``return_trajectory`` returns every intermediate ``x``,
    ``(n_steps + 1, B, H, D)``, from the conditioned noise to the plan.
    A warm start (Janner et al. 2022, §5.4) gives ``x_start: (B, H, D)``, a sample at diffusion step
    ``t_start`` (an earlier plan noised with ``q_sample``); the reverse process then runs from there.
    """
    def condition(x):
        return apply_conditioning(x, conditions, action_dim)

    device = generator.device if generator is not None else None
    net = with_mask(model, conditions, tuple(shape), action_dim, device)
    if ddim_steps is None:
        return diffusion.p_sample_loop(net, shape, generator, return_trajectory=return_trajectory,
                                       condition=condition, x_T=x_start, t_start=t_start)
    return diffusion.ddim_sample_loop(net, shape, ddim_steps, eta=eta, generator=generator, x_T=x_start,
                                      return_trajectory=return_trajectory, condition=condition, t_start=t_start)


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


def maze_windows(cfg) -> TrajectoryWindows:
    """The training windows of a maze recipe (``DiffuserConfig`` and the configs shaped like it)."""
    data = load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed)
    return TrajectoryWindows.from_maze_data(data, cfg.horizon, split=cfg.split, stride=cfg.stride)


def build_diffuser_net(cfg: DiffuserConfig) -> TemporalUnet:
    return TemporalUnet(TRANSITION_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults,
                        mask_dim=OBSERVATION_DIM if cfg.mask_input else 0)


def diffuser_recipe_loss(cfg: DiffuserConfig, device):
    diffusion = make_diffusion(cfg.n_diffusion_steps, cfg.schedule).to(device)
    return lambda model, x0, g: diffuser_loss(model, diffusion, x0, g, conditioning=cfg.conditioning)


def load_diffuser(name: str = "maze-umaze-diffuser", path=None, device=None, ema: bool = True):
    """Load a trained Diffuser recipe: ``(model, diffusion, normalizer, config)``.

    ``path=None`` reads the shipped checkpoint ``data/checkpoints/<name>.pt`` (checked against the
    manifest); a path reads that file. The normaliser comes from the checkpoint's ``extra`` entry.
    """
    from ..core.recipes import load_recipe_model

    model, ckpt, cfg = load_recipe_model(name, path=path, device=device, ema=ema)
    normalizer = LimitsNormalizer.from_state_dict(ckpt["extra"]["normalizer"])
    return model, make_diffusion(cfg.n_diffusion_steps, cfg.schedule), normalizer, cfg
