"""Diffusion Policy on Push-T (Chi et al. 2023), and the behaviour-cloning baseline it is compared with.

A policy here maps the last ``n_obs_steps`` observations to a *chunk* of ``horizon`` future actions,
and the robot executes only the first ``n_action_steps`` of them before asking again (receding
horizon). With the paper's numbers, To = 2, H = 16, Ta = 8 at 10 Hz, the policy is queried
every 0.8 s::

    time   t-1   t    t+1  ...  t+7  t+8 ... t+14
    obs     o    o                                      condition: (To, obs_dim) -> flattened
    chunk   a    a    a    ...  a    a   ...  a         predicted: (H, 2)
    run          x    x    ...  x                       executed: chunk[To-1 : To-1+Ta]

The diffusion policy samples the chunk with DDIM from a conditional DDPM over normalized chunks
(:class:`~tutorial_lib.nets.conditional_unet.ConditionalUnet1D`); the baseline regresses it with
an MLP and a squared loss, which averages the demonstrator's modes.

Training windows come from the demonstrations in ``data/pusht/demos.npz`` (made by
``python -m tutorial_lib.envs.pusht_demos``): one per time step of every successful episode, padded
at the episode's edges by repeating its first observation and its last action, as the reference
implementation's sampler does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.assets import data_dir
from ..diffusion.ddpm import GaussianDiffusion, make_beta_schedule
from ..envs.pusht_demos import load_demonstrations, mirror_demonstrations, state_to_keypoints_obs
from ..nets.conditional_unet import ConditionalUnet1D
from ..nets.mlp import mlp
from .trajectories import LimitsNormalizer

__all__ = ["PushTPolicyConfig", "make_windows", "policy_normalizers", "PushTData", "pusht_data",
           "build_diffusion_net", "build_bc_net", "make_diffusion", "diffusion_policy_loss", "bc_loss",
           "DiffusionPolicy", "BCPolicy", "load_policy"]

OBS_DIM = 20          # 9 block keypoints (x, y) + agent (x, y): PushTEnv(obs_type="keypoints")
ACTION_DIM = 2        # target position of the agent


@dataclass(frozen=True)
class PushTPolicyConfig:
    """Data, network and optimisation of the Push-T policies (both recipes share it).

    The diffusion policy uses ``widths``, ``time_dim``, ``n_diffusion_steps``; behaviour cloning
    uses ``hidden`` and ``depth``. Both read the same windows. ``mirror`` adds the mirror image
    of every demonstration (``tutorial_lib.envs.pusht_demos.mirror_demonstrations``), doubling
    the data.
    """

    demos: str = "pusht/demos.npz"
    mirror: bool = False
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    successful_only: bool = True
    widths: tuple = (32, 64, 128)
    time_dim: int = 64
    n_diffusion_steps: int = 100
    ddim_steps: int = 10
    hidden: int = 512
    depth: int = 4
    n_steps: int = 30_000
    batch_size: int = 256
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            raise ValueError(f"n_obs_steps and n_action_steps must be >= 1, got {self.n_obs_steps}, "
                             f"{self.n_action_steps}")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(f"the executed actions chunk[{self.n_obs_steps - 1}:{self.n_obs_steps - 1 + self.n_action_steps}]"
                             f" must fit in horizon = {self.horizon}")
        multiple = 2 ** (len(self.widths) - 1)
        if self.horizon % multiple:
            raise ValueError(f"horizon = {self.horizon} must be a multiple of {multiple} for widths {self.widths}")
        if not 1 <= self.ddim_steps <= self.n_diffusion_steps:
            raise ValueError(f"ddim_steps must be in [1, n_diffusion_steps], got {self.ddim_steps}")


def make_windows(obs: np.ndarray, actions: np.ndarray, episode_ends: np.ndarray, n_obs_steps: int,
                 horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every training window of a set of episodes, edge-padded.

    For each step ``t`` of each episode, the observations ``o[t-To+1 .. t]`` and the actions
    ``a[t-To+1 .. t-To+H]``, indices clamped to the episode (first observation and action repeated
    before it, last action repeated after it).
    Shapes: obs ``(N, O)``, actions ``(N, A)``, episode_ends ``(E,)``  ->
    ``(N, To, O)`` and ``(N, H, A)``.
    """
    obs_idx, act_idx = [], []
    start = 0
    for end in np.asarray(episode_ends):
        if end <= start:
            raise ValueError(f"episode_ends must increase strictly, got {end} after {start}")
        t = np.arange(start, end)[:, None]
        obs_idx.append(np.clip(t + np.arange(-n_obs_steps + 1, 1), start, end - 1))
        act_idx.append(np.clip(t + np.arange(-n_obs_steps + 1, horizon - n_obs_steps + 1), start, end - 1))
        start = end
    obs_idx, act_idx = np.concatenate(obs_idx), np.concatenate(act_idx)
    return obs[obs_idx], actions[act_idx]


def policy_normalizers(obs: np.ndarray, actions: np.ndarray) -> tuple[LimitsNormalizer, LimitsNormalizer]:
    """Min-max normalisers of keypoint observations and actions, fitted on the demonstrations."""
    return LimitsNormalizer.fit(obs), LimitsNormalizer.fit(actions)


@dataclass
class PushTData:
    """Normalized training windows: ``obs (N, To, 20)`` and ``actions (N, H, 2)`` in [-1, 1].

    Window ``i`` is centred on step ``step[i]`` of the demonstration file (its current
    observation is ``demos["obs"][step[i]]``, reflected by ``mirror_states`` where
    ``mirrored[i]``), which belongs to episode ``episode[i]``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    obs_normalizer: LimitsNormalizer
    action_normalizer: LimitsNormalizer
    n_episodes: int
    step: torch.Tensor
    episode: torch.Tensor
    mirrored: torch.Tensor

    def flat(self) -> torch.Tensor:
        """``(N, To * 20 + H * 2)``: one row per window, for the generic training loop."""
        return torch.cat([self.obs.flatten(1), self.actions.flatten(1)], dim=1)


def pusht_data(cfg: PushTPolicyConfig) -> PushTData:
    """Load the demonstrations of ``cfg``, keep the successful episodes (and their mirror images
    if ``cfg.mirror``), and window them."""
    demos = load_demonstrations(str(data_dir() / cfg.demos))
    ends = demos["episode_ends"]
    starts = np.concatenate([[0], ends[:-1]])
    keep = demos["episode_success"] if cfg.successful_only else np.ones(len(ends), bool)
    kept = [(s, e, i) for i, (s, e, k) in enumerate(zip(starts, ends, keep)) if k]
    sets = [(demos, False)] + ([(mirror_demonstrations(demos), True)] if cfg.mirror else [])
    pieces_o, pieces_a, step, episode, mirrored = [], [], [], [], []
    for d, flipped in sets:
        obs_all = state_to_keypoints_obs(d["obs"])
        for s, e, i in kept:
            pieces_o.append(obs_all[s:e])
            pieces_a.append(d["actions"][s:e])
            step.append(np.arange(s, e))
            episode.append(np.full(e - s, i))
            mirrored.append(np.full(e - s, flipped))
    obs, actions = np.concatenate(pieces_o), np.concatenate(pieces_a)
    new_ends = np.cumsum([len(p) for p in pieces_o])
    obs_norm, act_norm = policy_normalizers(obs, actions)
    wo, wa = make_windows(obs_norm.normalize(obs), act_norm.normalize(actions), new_ends, cfg.n_obs_steps,
                          cfg.horizon)
    return PushTData(torch.from_numpy(wo), torch.from_numpy(wa), obs_norm, act_norm, int(keep.sum()) * len(sets),
                     torch.from_numpy(np.concatenate(step)), torch.from_numpy(np.concatenate(episode)),
                     torch.from_numpy(np.concatenate(mirrored)))


def _split(batch: torch.Tensor, cfg: PushTPolicyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    n_obs = cfg.n_obs_steps * OBS_DIM
    return batch[:, :n_obs], batch[:, n_obs:].view(-1, cfg.horizon, ACTION_DIM)


def build_diffusion_net(cfg: PushTPolicyConfig) -> ConditionalUnet1D:
    """The FiLM-conditioned 1D U-Net of ``cfg``: chunks ``(B, H, 2)`` given ``(B, To * 20)``."""
    return ConditionalUnet1D(ACTION_DIM, cfg.n_obs_steps * OBS_DIM, widths=cfg.widths, time_dim=cfg.time_dim)


def build_bc_net(cfg: PushTPolicyConfig) -> nn.Sequential:
    """The baseline: an MLP from the flattened observations ``(B, To * 20)`` to a flat chunk ``(B, H * 2)``."""
    return mlp(cfg.n_obs_steps * OBS_DIM, cfg.horizon * ACTION_DIM, cfg.hidden, cfg.depth)


def make_diffusion(cfg: PushTPolicyConfig) -> GaussianDiffusion:
    """Squared-cosine schedule, epsilon prediction, predicted chunks clipped to [-1, 1] (as the paper)."""
    return GaussianDiffusion(make_beta_schedule("cosine", cfg.n_diffusion_steps), prediction="epsilon",
                             clip_denoised=1.0)


def diffusion_policy_loss(cfg: PushTPolicyConfig, device=None):
    """``E || eps - eps_theta(sqrt(abar_t) a_0 + sqrt(1 - abar_t) eps, t, o) ||^2`` on flat windows."""
    diffusion = make_diffusion(cfg).to(device or "cpu")

    def loss(model: ConditionalUnet1D, batch: torch.Tensor, generator=None) -> torch.Tensor:
        o, a = _split(batch, cfg)
        return diffusion.training_loss(model.bind(o), a, generator)
    return loss


def bc_loss(cfg: PushTPolicyConfig, device=None):
    """``E || pi(o) - a ||^2`` on flat windows (normalized units)."""
    def loss(model: nn.Module, batch: torch.Tensor, generator=None) -> torch.Tensor:
        o, a = _split(batch, cfg)
        return ((model(o) - a.flatten(1)) ** 2).mean()
    return loss


class _ChunkPolicy:
    """Shared plumbing: normalise observations, predict a normalized chunk, unnormalise it."""

    def __init__(self, net: nn.Module, cfg: PushTPolicyConfig, obs_normalizer: LimitsNormalizer,
                 action_normalizer: LimitsNormalizer):
        self.net, self.cfg = net.eval(), cfg
        self.obs_normalizer, self.action_normalizer = obs_normalizer, action_normalizer
        self.device = next(net.parameters()).device

    def _predict(self, o: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _traced(self, net: ConditionalUnet1D):
        """``net`` (a chunk denoiser ``(x, t, cond)``) as a frozen TorchScript trace: the same numbers,
        without Python's per-layer overhead."""
        example = (torch.zeros(1, self.cfg.horizon, ACTION_DIM, device=self.device),
                   torch.zeros(1, dtype=torch.long, device=self.device),
                   torch.zeros(1, net.cond_dim, device=self.device))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")     # the input checks become constants of the trace
            return torch.jit.freeze(torch.jit.trace(net, example))

    @torch.no_grad()
    def predict_chunk(self, obs_history) -> np.ndarray:
        """Observations ``(B, To, 20)`` (or ``(To, 20)``) in pixels -> action chunk ``(B, H, 2)`` (or ``(H, 2)``)."""
        o = torch.as_tensor(np.asarray(obs_history, dtype=np.float32))
        single = o.ndim == 2
        o = o[None] if single else o
        if o.shape[1:] != (self.cfg.n_obs_steps, OBS_DIM):
            raise ValueError(f"obs_history must have shape (B, {self.cfg.n_obs_steps}, {OBS_DIM}), the last "
                             f"{self.cfg.n_obs_steps} keypoint observations; got {tuple(o.shape)}")
        if not torch.isfinite(o).all():
            raise ValueError("obs_history contains NaN or infinite values")
        o = self.obs_normalizer.normalize(o).flatten(1).to(self.device)
        a = self.action_normalizer.unnormalize(self._predict(o).cpu()).numpy()
        return a[0] if single else a


class DiffusionPolicy(_ChunkPolicy):
    """Sample ``a_{0:H} ~ p_theta(. | o)`` with ``ddim_steps`` DDIM steps (eta = 0) from fresh noise.

    ``generator`` draws the initial noise, so a run is reproducible; two calls on the same
    observation may still return different chunks, one per way of pushing.

    With ``trace=True`` (default) the network is run as a frozen TorchScript trace: the same
    operations and the same numbers, without Python's per-layer overhead, which is most of the
    time of a batch-of-one call on a CPU (about 40% less here).
    """

    def __init__(self, net: ConditionalUnet1D, cfg: PushTPolicyConfig, obs_normalizer, action_normalizer,
                 ddim_steps: int | None = None, generator: torch.Generator | None = None, trace: bool = True):
        super().__init__(net, cfg, obs_normalizer, action_normalizer)
        self.diffusion = make_diffusion(cfg).to(self.device)
        self.ddim_steps = int(ddim_steps or cfg.ddim_steps)
        self.generator = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        self.denoiser = self._traced(net) if trace else net

    def _predict(self, o, return_trajectory: bool = False):
        denoiser = self.denoiser
        return self.diffusion.ddim_sample_loop(lambda x, t: denoiser(x, t, o), (o.shape[0], self.cfg.horizon, ACTION_DIM),
                                               self.ddim_steps, generator=self.generator,
                                               return_trajectory=return_trajectory)

    @torch.no_grad()
    def denoising_trajectory(self, obs_history, n_samples: int = 1) -> np.ndarray:
        """``n_samples`` chunks for one observation history ``(To, 20)``, at every DDIM step:
        ``(ddim_steps + 1, n_samples, H, 2)`` in pixels, from the initial noise (the sampler's
        current ``x_t``, unnormalised) to the final chunks."""
        o = self.obs_normalizer.normalize(torch.as_tensor(np.asarray(obs_history, np.float32)))
        o = o.flatten()[None].expand(n_samples, -1).to(self.device)
        traj = self._predict(o, return_trajectory=True).cpu()
        return self.action_normalizer.unnormalize(traj).numpy()


class BCPolicy(_ChunkPolicy):
    """The regression baseline: the chunk is the MLP's output (the conditional mean of the data)."""

    def _predict(self, o):
        return self.net(o).view(-1, self.cfg.horizon, ACTION_DIM)


def load_policy(name: str = "pusht-diffusion-policy", device="cpu", ddim_steps: int | None = None, seed: int = 0,
                path=None):
    """The policy of recipe ``name`` (``pusht-diffusion-policy`` or ``pusht-bc``), ready to roll out:
    the shipped checkpoint, or the file at ``path`` (e.g. a retrained one)."""
    from ..core.recipes import load_recipe_model

    net, ckpt, _ = load_recipe_model(name, path=path, device=device)
    cfg = PushTPolicyConfig(**ckpt["config"])
    norms = (LimitsNormalizer.from_state_dict(ckpt["extra"]["obs_normalizer"]),
             LimitsNormalizer.from_state_dict(ckpt["extra"]["action_normalizer"]))
    if isinstance(net, ConditionalUnet1D):
        gen = torch.Generator(next(net.parameters()).device).manual_seed(seed)
        return DiffusionPolicy(net, cfg, *norms, ddim_steps=ddim_steps, generator=gen)
    return BCPolicy(net, cfg, *norms)


def pusht_batches(cfg: PushTPolicyConfig, data: PushTData, device):
    """Batches of the demonstration windows as flat rows, drawn uniformly with replacement."""
    from ..core.recipes import row_sampler

    return row_sampler(data.flat().to(device))


def pusht_extra(cfg: PushTPolicyConfig, data: PushTData) -> dict:
    """What a Push-T policy's checkpoint keeps beside the weights: the normalisers."""
    return {"obs_normalizer": data.obs_normalizer.state_dict(), "action_normalizer": data.action_normalizer.state_dict()}
