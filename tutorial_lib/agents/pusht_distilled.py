"""A one-step Push-T policy distilled from the diffusion policy (the "few-step" remedy of Part 5).

DDIM with ``eta = 0`` makes the diffusion policy a *deterministic* map from an initial noise
``z ~ N(0, I)`` and an observation history ``o`` to an action chunk,
``a = F_teacher(z, o)``, ten network evaluations long. Knowledge distillation (Luhman & Luhman
2021) trains a student network to be that map in one evaluation::

    min_phi  E_{o, z} || G_phi(z, o) - F_teacher(z, o) ||^2

Because the student still receives the noise, it keeps the teacher's modes: different ``z`` fall
on different ways of pushing, as they do for the teacher. A regression without ``z``
(behaviour cloning) would average them. Consistency distillation (Song et al. 2023;
Consistency Policy, Prasad et al. 2024) is the refined form of this idea. It needs no stored
teacher samples, at the price of more machinery; the plain regression is enough to make the
point here.

The training pairs: every window of the teacher's demonstrations (its observation history),
``noises_per_window`` draws of ``z`` each, labelled by the teacher (DDIM, ``teacher_ddim_steps``).
They are made deterministically from ``seed`` when the recipe starts, so a resumed run sees the
same pairs. The student is the teacher's architecture, initialised from the teacher's weights,
with its step input fixed at ``T - 1``. Shapes: a row of the training tensor is
``[o (To * 20) | z (H * 2) | a (H * 2)]``, all in the teacher's normalised units.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..nets.conditional_unet import ConditionalUnet1D
from .pusht_policy import (ACTION_DIM, OBS_DIM, PushTPolicyConfig, _ChunkPolicy, build_diffusion_net, load_policy,
                           pusht_data)

__all__ = ["DistilledPolicyConfig", "teacher_labels", "distillation_data", "build_student", "distillation_loss",
           "distilled_extra", "DistilledPolicy", "load_distilled_policy", "chunk_agreement"]


@dataclass(frozen=True)
class DistilledPolicyConfig:
    """The teacher, the pairs and the optimisation of the one-step student."""

    teacher: str = "pusht-diffusion-policy"
    teacher_ddim_steps: int = 10
    noises_per_window: int = 4
    max_windows: int = 0            # 0: every window of the teacher's data; > 0: the first ones (tests)
    warm_start: bool = True         # initialise the student with the teacher's weights
    label_batch: int = 2048
    n_steps: int = 20_000
    batch_size: int = 256
    lr: float = 2e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.noises_per_window < 1 or self.teacher_ddim_steps < 1 or self.label_batch < 1:
            raise ValueError("noises_per_window, teacher_ddim_steps and label_batch must be >= 1, got "
                             f"{self.noises_per_window}, {self.teacher_ddim_steps}, {self.label_batch}")
        if self.max_windows < 0:
            raise ValueError(f"max_windows must be >= 0 (0: all), got {self.max_windows}")


def _teacher(cfg: DistilledPolicyConfig):
    """The teacher policy of ``cfg``, loaded once per process (the recipe's data, model, loss and
    checkpoint extras all read it; its labels take their noise as input, so sharing it is safe)."""
    return _load_teacher(cfg.teacher, cfg.teacher_ddim_steps)


@functools.lru_cache(maxsize=2)
def _load_teacher(name: str, ddim_steps: int):
    return load_policy(name, device="cpu", ddim_steps=ddim_steps)


@torch.no_grad()
def teacher_labels(teacher, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The teacher's DDIM (eta = 0) chunk from initial noise ``z``: ``o (B, To * 20)`` and
    ``z (B, H, 2)``, normalised  ->  ``(B, H, 2)`` normalised."""
    if z.shape != (o.shape[0], teacher.cfg.horizon, ACTION_DIM):
        raise ValueError(f"z must have shape ({o.shape[0]}, {teacher.cfg.horizon}, {ACTION_DIM}), got {tuple(z.shape)}")
    denoiser = teacher.denoiser
    return teacher.diffusion.ddim_sample_loop(lambda x, t: denoiser(x, t, o), tuple(z.shape), teacher.ddim_steps,
                                              x_T=z)


def distillation_data(cfg: DistilledPolicyConfig, log=None) -> torch.Tensor:
    """Rows ``[o | z | F_teacher(z, o)]`` (see the module docstring), ``(N * noises_per_window, 40 + 32 + 32)``."""
    teacher = _teacher(cfg)
    obs = pusht_data(teacher.cfg).obs.flatten(1)
    if cfg.max_windows:
        obs = obs[:cfg.max_windows]
    o = obs.repeat_interleave(cfg.noises_per_window, dim=0)
    g = torch.Generator().manual_seed(cfg.seed)
    z = torch.randn((len(o), teacher.cfg.horizon, ACTION_DIM), generator=g)
    labels = []
    for i in range(0, len(o), cfg.label_batch):
        labels.append(teacher_labels(teacher, o[i:i + cfg.label_batch], z[i:i + cfg.label_batch]))
        if log is not None and (i // cfg.label_batch) % 20 == 0:
            log(f"teacher labels {i + len(labels[-1])}/{len(o)}")
    return torch.cat([o, z.flatten(1), torch.cat(labels).flatten(1)], dim=1)


def build_student(cfg: DistilledPolicyConfig) -> ConditionalUnet1D:
    """The teacher's network (its architecture, and its weights if ``cfg.warm_start``)."""
    teacher = _teacher(cfg)
    net = build_diffusion_net(teacher.cfg)
    if cfg.warm_start:
        net.load_state_dict(teacher.net.state_dict())
    return net.train()


def _student_step(z: torch.Tensor, teacher_cfg: PushTPolicyConfig) -> torch.Tensor:
    """The student's fixed step input, ``T - 1`` for every row: ``(B,)``."""
    return torch.full((z.shape[0],), teacher_cfg.n_diffusion_steps - 1, dtype=torch.long, device=z.device)


def distillation_loss(cfg: DistilledPolicyConfig, device=None):
    """``E || G_phi(z, o) - F_teacher(z, o) ||^2`` on rows of :func:`distillation_data`."""
    teacher_cfg = _teacher(cfg).cfg
    n_obs, n_act = teacher_cfg.n_obs_steps * OBS_DIM, teacher_cfg.horizon * ACTION_DIM

    def loss(model: ConditionalUnet1D, batch: torch.Tensor, generator=None) -> torch.Tensor:
        o, z, a = batch[:, :n_obs], batch[:, n_obs:n_obs + n_act], batch[:, n_obs + n_act:]
        z = z.view(-1, teacher_cfg.horizon, ACTION_DIM)
        return ((model(z, _student_step(z, teacher_cfg), o) - a.view_as(z)) ** 2).mean()
    return loss


def distilled_extra(cfg: DistilledPolicyConfig, data) -> dict:
    """The teacher's normalisers and config, kept beside the student's weights."""
    teacher = _teacher(cfg)
    return {"obs_normalizer": teacher.obs_normalizer.state_dict(),
            "action_normalizer": teacher.action_normalizer.state_dict(),
            "teacher_config": teacher.cfg.__dict__.copy()}


class DistilledPolicy(_ChunkPolicy):
    """One network evaluation per chunk: ``a = clip(G_phi(z, o), -1, 1)`` with fresh ``z ~ N(0, I)``.

    ``generator`` draws ``z``, so a run is reproducible and two calls on the same observation may
    return different ways of pushing. The network runs as a frozen TorchScript trace, as the
    diffusion policy's does.
    """

    nfe = 1

    def __init__(self, net: ConditionalUnet1D, cfg: PushTPolicyConfig, obs_normalizer, action_normalizer,
                 generator: torch.Generator | None = None, trace: bool = True):
        super().__init__(net, cfg, obs_normalizer, action_normalizer)
        self.generator = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        self.student = self._traced(net) if trace else net

    def _predict(self, o):
        z = torch.randn((o.shape[0], self.cfg.horizon, ACTION_DIM), generator=self.generator, device=self.device)
        return self.student(z, _student_step(z, self.cfg), o).clamp(-1.0, 1.0)


def load_distilled_policy(device="cpu", seed: int = 0, path=None) -> DistilledPolicy:
    """The shipped one-step student (recipe ``pusht-distilled-policy``), or the file at ``path``."""
    from ..core.recipes import load_recipe_model
    from .trajectories import LimitsNormalizer

    net, ckpt, _ = load_recipe_model("pusht-distilled-policy", path=path, device=device)
    extra = ckpt["extra"]
    cfg = PushTPolicyConfig(**extra["teacher_config"])
    gen = torch.Generator(next(net.parameters()).device).manual_seed(seed)
    return DistilledPolicy(net, cfg, LimitsNormalizer.from_state_dict(extra["obs_normalizer"]),
                           LimitsNormalizer.from_state_dict(extra["action_normalizer"]), generator=gen)


def chunk_agreement(student: DistilledPolicy, teacher, obs_history: np.ndarray, n: int = 256, seed: int = 0) -> float:
    """Mean distance (pixels) between the student's and the teacher's chunks from the same noises,
    for one observation history ``(To, 20)``: how closely the student reproduces the map."""
    o = student.obs_normalizer.normalize(torch.as_tensor(np.asarray(obs_history, np.float32))).flatten()[None]
    o = o.expand(n, -1)
    z = torch.randn((n, student.cfg.horizon, ACTION_DIM), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a_s = student.student(z, _student_step(z, student.cfg), o).clamp(-1, 1)
        a_t = teacher_labels(teacher, o, z)
    diff = student.action_normalizer.unnormalize(a_s) - student.action_normalizer.unnormalize(a_t)
    return float(diff.norm(dim=-1).mean())
