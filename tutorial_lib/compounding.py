"""Compounding error: a one-step dynamics model rolled out vs a diffusion model of the whole sequence.

Model-based RL learns ``s_{t+1} = f(s_t, a_t)`` and predicts the future by feeding its own
predictions back in,

    s_hat_{k+1} = s_hat_k + f_theta(s_hat_k, a_k),      s_hat_0 = s_0,

so an error made at step k becomes the input of step k+1 and errors pile up along the horizon
(Lambert et al. 2022; Janner et al. 2019, MBPO, keep model rollouts short for this reason).

A trajectory diffusion model predicts the whole state sequence ``s_{1:H}`` at once: it is trained,
as Diffuser is, on windows ``[a_t, s_t]_{t<H}`` of the same data, with the known entries (here every
action and the first state) written into the noisy window before the network sees it and into its
estimate, and sampled with the same inpainting (:func:`sequence_condition`). No prediction is ever fed
back as an input, so there is nothing to compound; its errors are those of one joint sample.

Both see the same data (the waypoint expert's stream in the U-Maze, :mod:`tutorial_lib.envs.maze_data`)
and are scored on windows of a *held-out* stream (another seed) given the same start state and the
same actions: position error ``|| pos_hat_k - pos_k ||`` (maze units) against the horizon ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .assets import data_dir
from .ddpm import GaussianDiffusion
from .diffuser import make_diffusion
from .envs.maze_data import generate_dataset, load_or_generate
from .trajectories import ACTION_DIM, OBSERVATION_DIM, TRANSITION_DIM, LimitsNormalizer, TrajectoryWindows

__all__ = ["CompoundingConfig", "DynamicsData", "dynamics_data", "build_dynamics_net", "dynamics_loss",
           "rollout_dynamics", "sequence_windows", "build_sequence_net", "sequence_condition", "sequence_loss",
           "sample_sequences", "heldout_windows", "position_errors", "load_compounding_models", "compounding_experiment"]


@dataclass(frozen=True)
class CompoundingConfig:
    """Data and models of the compounding-error experiment (two recipes share it).

    The one-step model uses ``hidden``, ``depth``; the sequence model ``dim``, ``dim_mults``,
    ``n_diffusion_steps``. ``horizon`` is the length of a predicted window (states ``s_0 .. s_{H-1}``).
    """

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    horizon: int = 128
    hidden: int = 256
    depth: int = 3
    dim: int = 32
    dim_mults: tuple = (1, 2, 4)
    n_diffusion_steps: int = 64
    n_steps: int = 12_000
    batch_size: int = 32
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))
        multiple = 2 ** (len(self.dim_mults) - 1)
        if self.horizon < 2 or self.horizon % multiple:
            raise ValueError(f"horizon must be a multiple of {multiple} (and >= 2), got {self.horizon}")


def _stream(cfg: CompoundingConfig) -> dict:
    path = data_dir() / "maze" / f"{cfg.layout}_{cfg.n_transitions}_seed{cfg.data_seed}.npz"
    return load_or_generate(cfg.layout, str(path), n_steps=cfg.n_transitions, seed=cfg.data_seed)


# ----------------------------------------------------------------------------- one-step model
@dataclass
class DynamicsData:
    """Rows ``[s_t, a_t, (s_{t+1} - s_t) / delta_scale]`` (normalised states and actions): ``(N, 10)``."""

    rows: torch.Tensor
    normalizer: LimitsNormalizer
    delta_scale: torch.Tensor


def dynamics_data(cfg: CompoundingConfig) -> DynamicsData:
    """Every consecutive pair of the stream (it is continuous), with per-coordinate scaled differences:
    a position moves by about 0.01 per step and a velocity by up to 0.24, so each difference is
    divided by its standard deviation over the data before it is regressed."""
    windows = TrajectoryWindows.from_maze_data(_stream(cfg), horizon=2, split="none")
    x = windows.data                                              # (N, 6) normalised [a, s]
    s, a = x[:-1, ACTION_DIM:], x[:-1, :ACTION_DIM]
    delta = x[1:, ACTION_DIM:] - s
    scale = delta.std(0)
    return DynamicsData(torch.cat([s, a, delta / scale], 1), windows.normalizer, scale)


def build_dynamics_net(cfg: CompoundingConfig) -> nn.Sequential:
    """``f_theta``: an MLP ``[s, a] (B, 6) -> scaled state difference (B, 4)``."""
    layers, width = [], OBSERVATION_DIM + ACTION_DIM
    for _ in range(cfg.depth):
        layers += [nn.Linear(width, cfg.hidden), nn.Mish()]
        width = cfg.hidden
    layers.append(nn.Linear(width, OBSERVATION_DIM))
    return nn.Sequential(*layers)


def dynamics_loss(cfg: CompoundingConfig, device=None):
    """``E || f_theta(s_t, a_t) - (s_{t+1} - s_t) / delta_scale ||^2`` on rows of :class:`DynamicsData`."""
    def loss(model, batch, generator=None):
        d = OBSERVATION_DIM + ACTION_DIM
        return ((model(batch[:, :d]) - batch[:, d:]) ** 2).mean()
    return loss


@torch.no_grad()
def rollout_dynamics(model: nn.Module, delta_scale: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Autoregressive prediction ``s_hat_{k+1} = s_hat_k + delta_scale * f(s_hat_k, a_k)``.

    Shapes (normalised): s0 ``(B, 4)``, actions ``(B, K, 2)``  ->  states ``(B, K + 1, 4)`` from ``s_0``.
    """
    s, out = s0, [s0]
    scale = delta_scale.to(s0.device)
    for k in range(actions.shape[1]):
        s = s + scale * model(torch.cat([s, actions[:, k]], -1))
        out.append(s)
    return torch.stack(out, 1)


# ----------------------------------------------------------------------------- sequence model
def sequence_windows(cfg: CompoundingConfig) -> TrajectoryWindows:
    """Windows ``[a_t, s_t]`` of ``horizon`` steps anywhere in the (continuous) training stream."""
    return TrajectoryWindows.from_maze_data(_stream(cfg), cfg.horizon, split="none")


def build_sequence_net(cfg: CompoundingConfig):
    """Diffuser's temporal U-Net over ``(B, H, 6)`` windows."""
    from .nets.temporal_unet import TemporalUnet
    return TemporalUnet(TRANSITION_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults)


def sequence_condition(actions: torch.Tensor, s0: torch.Tensor):
    """``x -> x`` with every action and the first state written in (inpainting).

    Shapes (normalised): actions ``(B, H, 2)``, s0 ``(B, 4)``; the returned function maps
    ``(B, H, 6) -> (B, H, 6)``.
    """
    def condition(x):
        x = x.clone()
        x[..., :ACTION_DIM] = actions
        x[:, 0, ACTION_DIM:] = s0
        return x
    return condition


def sequence_loss(cfg: CompoundingConfig, device=None):
    """Diffuser's x0 loss with the actions and ``s_0`` inpainted in the noisy input and in the estimate."""
    diffusion = make_diffusion(cfg.n_diffusion_steps).to(device or "cpu")

    def loss(model, x0, generator=None):
        condition = sequence_condition(x0[..., :ACTION_DIM], x0[:, 0, ACTION_DIM:])
        return diffusion.training_loss(lambda x, t: condition(model(x, t)), x0, generator, condition=condition)
    return loss


@torch.no_grad()
def sample_sequences(model, diffusion: GaussianDiffusion, s0: torch.Tensor, actions: torch.Tensor,
                     generator: torch.Generator | None = None, ddim_steps: int | None = None) -> torch.Tensor:
    """One sample of ``s_{0:H}`` per row given ``s_0`` and ``a_{0:H}``: ``(B, H, 4)`` (normalised).

    DDPM through every diffusion step unless ``ddim_steps`` is given.
    """
    condition = sequence_condition(actions, s0)
    shape = (actions.shape[0], actions.shape[1], TRANSITION_DIM)
    if ddim_steps is None:
        x = diffusion.p_sample_loop(model, shape, generator, condition=condition)
    else:
        x = diffusion.ddim_sample_loop(model, shape, ddim_steps, generator=generator, condition=condition)
    return x[..., ACTION_DIM:]


# ----------------------------------------------------------------------------- the experiment
def load_compounding_models(device="cpu"):
    """The shipped models: ``(dynamics, delta_scale, sequence model, normalizer, config)``."""
    from .recipes import load_pretrained

    dynamics, ckpt_d = load_pretrained("motivation-dynamics-mlp", device=device)
    seq, ckpt_s = load_pretrained("motivation-sequence-diffusion", device=device)
    cfg = CompoundingConfig(**ckpt_s["config"])
    norm = LimitsNormalizer.from_state_dict(ckpt_s["extra"]["normalizer"])
    norm_d = LimitsNormalizer.from_state_dict(ckpt_d["extra"]["normalizer"])
    if not (torch.equal(norm.lo, norm_d.lo) and torch.equal(norm.hi, norm_d.hi)):
        raise ValueError("the two compounding checkpoints were trained on different data; retrain both with "
                         "python -m tutorial_lib.train motivation-dynamics-mlp / motivation-sequence-diffusion")
    return dynamics, torch.tensor(ckpt_d["extra"]["delta_scale"]), seq, norm, cfg


def heldout_windows(cfg: CompoundingConfig, normalizer: LimitsNormalizer, n_windows: int = 200, seed: int = 1,
                 n_transitions: int = 50_000) -> torch.Tensor:
    """``n_windows`` windows ``(n, H, 6)`` (normalised with the training normaliser) drawn at random
    from a fresh stream of the expert with data seed ``seed`` (the models were trained on seed
    ``cfg.data_seed``)."""
    if seed == cfg.data_seed:
        raise ValueError(f"the test stream must use another seed than the training data ({cfg.data_seed})")
    data = generate_dataset(cfg.layout, n_transitions, seed=seed)
    windows = TrajectoryWindows.from_maze_data(data, cfg.horizon, split="none", normalizer=normalizer)
    idx = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[:n_windows]
    return torch.stack([windows[int(i)] for i in idx])


def position_errors(pred: torch.Tensor, true: torch.Tensor, normalizer: LimitsNormalizer) -> np.ndarray:
    """Mean over windows of the position error at every step, in maze units: ``(B, H, 4)`` x 2 -> ``(H,)``."""
    state_norm = normalizer.sub(ACTION_DIM, TRANSITION_DIM)
    p, t = state_norm.unnormalize(pred.cpu())[..., :2], state_norm.unnormalize(true.cpu())[..., :2]
    return (p - t).norm(dim=-1).mean(0).numpy()


def compounding_experiment(dynamics, delta_scale, seq_model, normalizer: LimitsNormalizer,
                           cfg: CompoundingConfig, horizons=(1, 2, 4, 8, 16, 32, 64, 127), n_windows: int = 200,
                           seed: int = 1) -> dict:
    """Position error vs horizon of both models on held-out windows, given the same ``s_0`` and actions.

    Returns ``horizons``, ``autoregressive_error``, ``diffusion_error`` (lists, maze units, mean over
    ``n_windows`` windows), ``error_ratio_at_max_horizon`` and the raw predictions for plots:
    ``true``, ``autoregressive``, ``diffusion`` (``(n, H, 4)`` in maze units).
    """
    if max(horizons) >= cfg.horizon:
        raise ValueError(f"horizons must be < the window length {cfg.horizon}, got {max(horizons)}")
    x = heldout_windows(cfg, normalizer, n_windows, seed)
    actions, states = x[..., :ACTION_DIM], x[..., ACTION_DIM:]
    ar = rollout_dynamics(dynamics, delta_scale, states[:, 0], actions[:, :-1])
    diffusion = make_diffusion(cfg.n_diffusion_steps)
    gen = torch.Generator().manual_seed(seed)
    dm = sample_sequences(seq_model, diffusion, states[:, 0], actions, generator=gen)
    err_ar = position_errors(ar, states, normalizer)
    err_dm = position_errors(dm, states, normalizer)
    hs = list(horizons)
    state_norm = normalizer.sub(ACTION_DIM, TRANSITION_DIM)
    return {"horizons": hs,
            "autoregressive_error": [float(err_ar[h]) for h in hs],
            "diffusion_error": [float(err_dm[h]) for h in hs],
            "error_ratio_at_max_horizon": float(err_ar[hs[-1]] / err_dm[hs[-1]]),
            "true": state_norm.unnormalize(states).numpy(),
            "autoregressive": state_norm.unnormalize(ar).numpy(),
            "diffusion": state_norm.unnormalize(dm).numpy()}
