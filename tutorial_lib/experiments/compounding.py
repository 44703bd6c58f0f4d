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

Both see the same data and are scored on *held-out* windows given the same start state and the
same actions: position error ``|| pos_hat_k - pos_k ||`` against the horizon ``k``. Two tasks:

* ``"maze"``: the U-Maze waypoint expert's stream (:mod:`tutorial_lib.envs.maze_data`), tested on
  a stream of another seed; the ball's position, in cells.
* ``"pusht"``: open-loop random pushes of the T (:mod:`tutorial_lib.envs.pusht_play`, 3000
  episodes of 64 steps, one window each), tested on the last 200; the block's position, in
  pixels. Not the demonstrations, which all end with the T on its goal (a sequence model would
  learn where episodes end), and not pushes aimed at the current block, whose later actions tell
  where the block went (a model given the whole action sequence would read the state off them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.assets import verify_file
from ..core.stats import mean_ci95
from ..diffusion.ddpm import GaussianDiffusion
from ..agents.diffuser import make_diffusion
from ..envs.maze_data import generate_dataset, load_stream
from ..nets.mlp import mlp
from ..core.recipes import row_sampler
from ..agents.trajectories import ACTION_DIM, LimitsNormalizer, TrajectoryWindows

__all__ = ["TASKS", "CompoundingConfig", "pusht_transitions", "training_windows", "DynamicsData", "dynamics_data", "build_dynamics_net", "dynamics_loss",
           "rollout_dynamics", "sequence_windows", "build_sequence_net", "sequence_condition", "sequence_loss",
           "to_relative", "from_relative", "sample_sequences", "heldout_windows", "position_errors", "load_compounding_models", "compounding_experiment"]


TASKS = ("maze", "pusht")
STATE_DIMS = {"maze": 4, "pusht": 6}
"""Maze: ``(x, y, vx, vy)``. Push-T: ``(agent x, agent y, block x, block y, cos theta, sin theta)``."""
POSITION = {"maze": slice(0, 2), "pusht": slice(2, 4)}
"""The coordinates whose error is reported: the ball's position (cells), the block's position (pixels)."""
PUSHT_PLAY = "pusht/play.npz"
"""The Push-T data of the study: open-loop random pushes (:mod:`tutorial_lib.envs.pusht_play`)."""


@dataclass(frozen=True)
class CompoundingConfig:
    """Data and models of the compounding-error experiment (two recipes share it).

    The one-step model uses ``hidden``, ``depth``; the sequence model ``dim``, ``dim_mults``,
    ``n_diffusion_steps``. ``horizon`` is the length of a predicted window (states ``s_0 .. s_{H-1}``).
    ``relative``: the sequence model diffuses displacements from the start state instead of the
    states themselves (:func:`to_relative`), as the one-step model regresses differences.
    ``dynamics_noise``: the maze stream recorded with that process noise (``maze_data.generate_dataset``).
    """

    task: str = "maze"
    layout: str = "umaze"
    n_transitions: int = 1_000_000
    n_test_episodes: int = 20
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
    relative: bool = False
    pusht_data: str = PUSHT_PLAY
    dynamics_noise: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        multiple = 2 ** (len(self.dim_mults) - 1)
        if self.horizon < 2 or self.horizon % multiple:
            raise ValueError(f"horizon must be a multiple of {multiple} (and >= 2), got {self.horizon}")


def pusht_transitions(n_test_episodes: int = 20, data: str = PUSHT_PLAY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Push-T play (or demonstration) episodes as transitions ``[a_t, s_t]`` ``(N, 8)`` (the angle as
    its cosine and sine), with the episodes ``[start, stop)`` split into training paths and the last
    ``n_test_episodes`` held out: ``(transitions, train_paths, test_paths)``. ``data``: a file of
    ``data/`` with the layout of :mod:`tutorial_lib.envs.pusht_play`."""
    from ..envs.pusht_play import load_play_data

    episodes = load_play_data(str(verify_file(data)))
    obs = episodes["obs"]
    states = np.concatenate([obs[:, :4], np.cos(obs[:, 4:5]), np.sin(obs[:, 4:5])], axis=1)
    transitions = np.concatenate([episodes["actions"], states], axis=1).astype(np.float32)
    ends = episodes["episode_ends"]
    paths = np.stack([np.r_[0, ends[:-1]], ends], axis=1)
    if not 1 <= n_test_episodes < len(paths):
        raise ValueError(f"n_test_episodes must be in [1, {len(paths) - 1}], got {n_test_episodes}")
    return transitions, paths[:-n_test_episodes], paths[-n_test_episodes:]


def training_windows(cfg: CompoundingConfig, horizon: int) -> TrajectoryWindows:
    """Training windows ``[a_t, s_t]`` of ``horizon`` steps: anywhere in the continuous maze stream,
    or inside one training episode of Push-T."""
    if cfg.task == "maze":
        return TrajectoryWindows.from_maze_data(load_stream(cfg.layout, cfg.n_transitions, cfg.data_seed,
                                                             cfg.dynamics_noise), horizon,
                                                 split="none")
    transitions, train_paths, _ = pusht_transitions(cfg.n_test_episodes, cfg.pusht_data)
    train_rows = np.concatenate([np.arange(a, b) for a, b in train_paths])
    normalizer = LimitsNormalizer.fit(transitions[train_rows])
    return TrajectoryWindows(transitions, train_paths, horizon, normalizer)


# ----------------------------------------------------------------------------- one-step model
@dataclass
class DynamicsData:
    """Rows ``[s_t, a_t, (s_{t+1} - s_t) / delta_scale]`` (normalised states and actions): ``(N, 2 S + 2)``."""

    rows: torch.Tensor
    normalizer: LimitsNormalizer
    delta_scale: torch.Tensor


def dynamics_data(cfg: CompoundingConfig) -> DynamicsData:
    """Every consecutive pair of the training data (inside one training episode for Push-T), with
    per-coordinate scaled differences: in the maze a position moves by about 0.01 per step and a
    velocity by up to 0.24, so each difference is divided by its standard deviation over the data
    before it is regressed."""
    windows = training_windows(cfg, horizon=2)
    pairs = windows.sample_all()                                  # (M, 2, D) normalised [a, s]
    s, a = pairs[:, 0, ACTION_DIM:], pairs[:, 0, :ACTION_DIM]
    delta = pairs[:, 1, ACTION_DIM:] - s
    scale = delta.std(0)
    return DynamicsData(torch.cat([s, a, delta / scale], 1), windows.normalizer, scale)


def build_dynamics_net(cfg: CompoundingConfig) -> nn.Sequential:
    """``f_theta``: an MLP ``[s, a] (B, S + 2) -> scaled state difference (B, S)``."""
    return mlp(STATE_DIMS[cfg.task] + ACTION_DIM, STATE_DIMS[cfg.task], cfg.hidden, cfg.depth)


def dynamics_loss(cfg: CompoundingConfig, device=None):
    """``E || f_theta(s_t, a_t) - (s_{t+1} - s_t) / delta_scale ||^2`` on rows of :class:`DynamicsData`."""
    def loss(model, batch, generator=None):
        d = STATE_DIMS[cfg.task] + ACTION_DIM
        return ((model(batch[:, :d]) - batch[:, d:]) ** 2).mean()
    return loss



def dynamics_batches(cfg: CompoundingConfig, data: DynamicsData, device):
    """Batches of consecutive pairs, drawn uniformly with replacement."""
    return row_sampler(data.rows.to(device))


def dynamics_extra(cfg: CompoundingConfig, data: DynamicsData) -> dict:
    """What a one-step model's checkpoint keeps beside the weights."""
    return {"normalizer": data.normalizer.state_dict(), "delta_scale": data.delta_scale.tolist()}


@torch.no_grad()
def rollout_dynamics(model: nn.Module, delta_scale: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Autoregressive prediction ``s_hat_{k+1} = s_hat_k + delta_scale * f(s_hat_k, a_k)``.

    Shapes (normalised): s0 ``(B, S)``, actions ``(B, K, 2)``  ->  states ``(B, K + 1, S)`` from ``s_0``.
    """
    s, out = s0, [s0]
    scale = delta_scale.to(s0.device)
    for k in range(actions.shape[1]):
        s = s + scale * model(torch.cat([s, actions[:, k]], -1))
        out.append(s)
    return torch.stack(out, 1)


# ----------------------------------------------------------------------------- sequence model
def sequence_windows(cfg: CompoundingConfig) -> TrajectoryWindows:
    """Training windows ``[a_t, s_t]`` of ``cfg.horizon`` steps."""
    return training_windows(cfg, cfg.horizon)


def build_sequence_net(cfg: CompoundingConfig):
    """Diffuser's temporal U-Net over ``(B, H, 2 + S)`` windows (``(B, H, 2 + 2 S)`` if ``cfg.relative``)."""
    from ..nets.temporal_unet import TemporalUnet
    n_states = STATE_DIMS[cfg.task] * (2 if cfg.relative else 1)
    return TemporalUnet(ACTION_DIM + n_states, dim=cfg.dim, dim_mults=cfg.dim_mults)


RELATIVE_SCALE = 2.0
"""Displacements of normalised states lie in ``[-2, 2]``; divided by this they lie in ``[-1, 1]``,
the range the sampler clips its estimates to."""


def to_relative(x: torch.Tensor) -> torch.Tensor:
    """``[a_t, s_t]`` ``(B, H, 2 + S)`` -> ``[a_t, s_0, (s_t - s_0) / 2]`` ``(B, H, 2 + 2 S)`` (normalised).

    The start state is repeated on every row, so each row sees it, and the unknown part of the
    window is the displacement from it: zero at ``t = 0`` and small for small ``t``, which the
    network need not copy from another row.
    """
    a, s = x[..., :ACTION_DIM], x[..., ACTION_DIM:]
    s0 = s[:, :1].expand_as(s)
    return torch.cat([a, s0, (s - s0) / RELATIVE_SCALE], -1)


def from_relative(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_relative`: ``(B, H, 2 + 2 S) -> (B, H, 2 + S)``."""
    n_states = (z.shape[-1] - ACTION_DIM) // 2
    a, s0, d = z[..., :ACTION_DIM], z[..., ACTION_DIM:ACTION_DIM + n_states], z[..., ACTION_DIM + n_states:]
    return torch.cat([a, s0 + RELATIVE_SCALE * d], -1)


def sequence_condition(actions: torch.Tensor, s0: torch.Tensor, relative: bool = False):
    """``x -> x`` with every action and the first state written in (inpainting).

    Shapes (normalised): actions ``(B, H, 2)``, s0 ``(B, S)``; the returned function maps
    ``(B, H, 2 + S) -> (B, H, 2 + S)``. With ``relative`` (the layout of :func:`to_relative`,
    ``(B, H, 2 + 2 S)``): the actions, ``s_0`` on every row and a zero displacement at ``t = 0``.
    """
    n_states = s0.shape[-1]

    def condition(x):
        x = x.clone()
        x[..., :ACTION_DIM] = actions
        if relative:
            x[..., ACTION_DIM:ACTION_DIM + n_states] = s0[:, None]
            x[:, 0, ACTION_DIM + n_states:] = 0.0
        else:
            x[:, 0, ACTION_DIM:] = s0
        return x
    return condition


def sequence_loss(cfg: CompoundingConfig, device=None):
    """Diffuser's x0 loss with the actions and ``s_0`` inpainted in the noisy input and in the estimate
    (on the displacement layout of :func:`to_relative` if ``cfg.relative``)."""
    diffusion = make_diffusion(cfg.n_diffusion_steps).to(device or "cpu")

    def loss(model, x0, generator=None):
        condition = sequence_condition(x0[..., :ACTION_DIM], x0[:, 0, ACTION_DIM:], cfg.relative)
        if cfg.relative:
            x0 = to_relative(x0)
        return diffusion.training_loss(lambda x, t: condition(model(x, t)), x0, generator, condition=condition)
    return loss


@torch.no_grad()
def sample_sequences(model, diffusion: GaussianDiffusion, s0: torch.Tensor, actions: torch.Tensor,
                     generator: torch.Generator | None = None, ddim_steps: int | None = None,
                     relative: bool = False) -> torch.Tensor:
    """One sample of ``s_{0:H}`` per row given ``s_0`` and ``a_{0:H}``: ``(B, H, S)`` (normalised).

    DDPM through every diffusion step unless ``ddim_steps`` is given. ``relative``: the model was
    trained on the displacement layout (``CompoundingConfig.relative``).
    """
    condition = sequence_condition(actions, s0, relative)
    n_states = s0.shape[-1] * (2 if relative else 1)
    shape = (actions.shape[0], actions.shape[1], ACTION_DIM + n_states)
    if ddim_steps is None:
        x = diffusion.p_sample_loop(model, shape, generator, condition=condition)
    else:
        x = diffusion.ddim_sample_loop(model, shape, ddim_steps, generator=generator, condition=condition)
    if relative:
        x = from_relative(x)
    return x[..., ACTION_DIM:]


# ----------------------------------------------------------------------------- the experiment
RECIPES = {"maze": ("motivation-dynamics-mlp", "motivation-sequence-diffusion"),
           "pusht": ("motivation-pusht-dynamics-mlp", "motivation-pusht-sequence-diffusion")}
HORIZONS = {"maze": (1, 2, 4, 8, 16, 32, 64, 127), "pusht": (1, 2, 4, 8, 16, 32, 63)}


def load_compounding_models(task: str = "maze", device="cpu", paths: dict | None = None):
    """The models of ``task``: ``(dynamics, delta_scale, sequence model, normalizer, config)``.

    The shipped checkpoints, or the files ``paths = {recipe name: path}`` names (e.g. retrained ones).
    """
    from ..core.recipes import load_recipe_model

    if task not in RECIPES:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    paths = paths or {}
    dyn_name, seq_name = RECIPES[task]
    unknown = set(paths) - {dyn_name, seq_name}
    if unknown:
        raise ValueError(f"paths names {sorted(unknown)}; the recipes of {task} are {dyn_name} and {seq_name}")
    dynamics, ckpt_d, _ = load_recipe_model(dyn_name, path=paths.get(dyn_name), device=device)
    seq, ckpt_s, cfg = load_recipe_model(seq_name, path=paths.get(seq_name), device=device)
    norm = LimitsNormalizer.from_state_dict(ckpt_s["extra"]["normalizer"])
    norm_d = LimitsNormalizer.from_state_dict(ckpt_d["extra"]["normalizer"])
    if not (torch.equal(norm.lo, norm_d.lo) and torch.equal(norm.hi, norm_d.hi)):
        raise ValueError(f"the two compounding checkpoints of {task} were trained on different data; retrain both "
                         f"with python -m tutorial_lib.train {dyn_name} / {seq_name}")
    return dynamics, torch.tensor(ckpt_d["extra"]["delta_scale"]), seq, norm, cfg


def heldout_windows(cfg: CompoundingConfig, normalizer: LimitsNormalizer, n_windows: int = 200, seed: int = 1,
                    n_transitions: int = 50_000) -> torch.Tensor:
    """``n_windows`` held-out windows ``(n, H, 2 + S)``, normalised with the training normaliser, drawn
    at random (generator seed ``seed``). Maze: from a fresh stream of the expert with data seed
    ``seed`` (the models were trained on ``cfg.data_seed``). Push-T: from the held-out episodes
    (all of their windows if there are fewer than ``n_windows``)."""
    if cfg.task == "maze":
        if seed == cfg.data_seed:
            raise ValueError(f"the test stream must use another seed than the training data ({cfg.data_seed})")
        data = generate_dataset(cfg.layout, n_transitions, seed=seed)
        windows = TrajectoryWindows.from_maze_data(data, cfg.horizon, split="none", normalizer=normalizer)
    else:
        transitions, _, test_paths = pusht_transitions(cfg.n_test_episodes, cfg.pusht_data)
        windows = TrajectoryWindows(transitions, test_paths, cfg.horizon, normalizer)
    idx = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[:n_windows]
    return torch.stack([windows[int(i)] for i in idx])


def position_errors(pred: torch.Tensor, true: torch.Tensor, normalizer: LimitsNormalizer,
                    task: str = "maze", per_window: bool = False) -> np.ndarray:
    """Mean over windows of the position error at every step (maze: the ball, in cells; Push-T: the
    block, in pixels): ``(B, H, S)`` x 2 -> ``(H,)``; with ``per_window``, ``(B, H)`` unaveraged."""
    state_norm = normalizer.sub(ACTION_DIM, normalizer.dim)
    pos = POSITION[task]
    p, t = state_norm.unnormalize(pred.cpu())[..., pos], state_norm.unnormalize(true.cpu())[..., pos]
    err = (p - t).norm(dim=-1)
    return err.numpy() if per_window else err.mean(0).numpy()


def compounding_experiment(dynamics, delta_scale, seq_model, normalizer: LimitsNormalizer,
                           cfg: CompoundingConfig, horizons=None, n_windows: int = 200, seed: int = 1) -> dict:
    """Position error vs horizon of both models on held-out windows, given the same ``s_0`` and actions.

    Returns ``horizons``, ``autoregressive_error``, ``diffusion_error`` (lists, mean over the
    windows, in cells or pixels), ``error_ratio_at_max_horizon``, ``n_windows``, and the raw
    predictions for plots: ``true``, ``autoregressive``, ``diffusion`` (``(n, H, S)``, unnormalised).
    """
    horizons = tuple(horizons or HORIZONS[cfg.task])
    if max(horizons) >= cfg.horizon:
        raise ValueError(f"horizons must be < the window length {cfg.horizon}, got {max(horizons)}")
    x = heldout_windows(cfg, normalizer, n_windows, seed)
    actions, states = x[..., :ACTION_DIM], x[..., ACTION_DIM:]
    ar = rollout_dynamics(dynamics, delta_scale, states[:, 0], actions[:, :-1])
    diffusion = make_diffusion(cfg.n_diffusion_steps)
    gen = torch.Generator().manual_seed(seed)
    dm = sample_sequences(seq_model, diffusion, states[:, 0], actions, generator=gen, relative=cfg.relative)
    err_ar = position_errors(ar, states, normalizer, cfg.task)      # the means (torch's reduction, as printed)
    err_dm = position_errors(dm, states, normalizer, cfg.task)
    win_ar = position_errors(ar, states, normalizer, cfg.task, per_window=True)   # per window, for the intervals
    win_dm = position_errors(dm, states, normalizer, cfg.task, per_window=True)
    hs = list(horizons)
    state_norm = normalizer.sub(ACTION_DIM, normalizer.dim)
    return {"horizons": hs,
            "autoregressive_error": [float(err_ar[h]) for h in hs],
            "diffusion_error": [float(err_dm[h]) for h in hs],
            "error_ratio_at_max_horizon": float(err_ar[hs[-1]] / err_dm[hs[-1]]),
            "n_windows": len(x),
            "ci95": {"autoregressive_error": [mean_ci95(win_ar[:, h])[1] for h in hs],
                     "diffusion_error": [mean_ci95(win_dm[:, h])[1] for h in hs]},
            "true": state_norm.unnormalize(states).numpy(),
            "autoregressive": state_norm.unnormalize(ar).numpy(),
            "diffusion": state_norm.unnormalize(dm).numpy()}
