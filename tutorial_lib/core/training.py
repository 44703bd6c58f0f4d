"""One training loop for every model in the book: Adam, EMA weights, progress bar, resumable.

The loop runs on the CPU or a GPU alike ("GPU training cells"): pass ``device=None`` to use the
best device available. With a ``checkpoint_path`` it writes a checkpoint every
``checkpoint_every`` steps and when interrupted (Ctrl-C), and a later call with the same path
resumes where it stopped, restoring the model, the EMA weights, the optimizer, the history and
the random generator, so an interrupted run ends exactly where an uninterrupted one would.

Started by ``torchrun`` (after :func:`tutorial_lib.core.distributed.init_from_environment`), the
same loop trains data-parallel with ``DistributedDataParallel``: see :mod:`.distributed` for how
the global batch is split and how the noise is seeded. ``precision="bf16"`` or ``"fp16"`` runs
the forward pass under autocast (fp16 with loss scaling, on CUDA only).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .utils import get_device

__all__ = ["TrainConfig", "TrainResult", "train", "update_ema"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every recipe.

    Attributes:
        n_steps: optimisation steps in total.
        batch_size: samples per step.
        lr: Adam learning rate.
        ema_decay: decay of the exponential moving average of the weights,
            ``ema <- decay * ema + (1 - decay) * weights`` after every step.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        log_every: steps averaged into one point of the loss history.
        checkpoint_every: steps between checkpoints (when a path is given).
        seed: seed of the generator that draws batches and noise.
        lr_schedule: ``"constant"``, or ``"cosine"``: ``lr_k = lr (1 + cos(pi k / n_steps)) / 2``,
            decaying to zero at the last step (Loshchilov & Hutter 2017).
    """

    n_steps: int = 10_000
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    log_every: int = 50
    checkpoint_every: int = 2_000
    seed: int = 0
    lr_schedule: str = "constant"

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        for field in ("n_steps", "batch_size", "log_every", "checkpoint_every"):
            if int(getattr(self, field)) <= 0:
                raise ValueError(f"TrainConfig.{field} must be positive, got {getattr(self, field)!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained and EMA models, the step reached, the history."""

    model: torch.nn.Module
    ema_model: torch.nn.Module
    step: int
    history: dict
    resumed_from: int = 0


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _LossModule(torch.nn.Module):
    """``loss_fn(model, batch, generator)`` as a module's forward, so that DistributedDataParallel
    sees the forward pass (the losses call model methods such as ``bind``, not only ``forward``)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch, generator):
        return self.loss_fn(self.model, batch, generator)


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta`` for every parameter and buffer."""
    torch._foreach_lerp_(list(ema_model.parameters()), list(model.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)


def _restore_generator(generator: torch.Generator, state: torch.Tensor | None, *, seed: int, step: int,
                       name: str) -> None:
    """Continue the checkpoint's batch and noise stream where it stopped. A state written by a
    generator of another device type (a CUDA run resumed on a CPU, say) cannot be continued: the
    generator is then reseeded from ``(seed, step)``, with a warning that the run is no longer
    bit-identical to an uninterrupted one (its statistics are unchanged)."""
    if state is None:
        return
    if state.numel() != generator.get_state().numel():
        warnings.warn(f"{name}: the checkpoint's random state ({state.numel()} bytes) comes from a generator of "
                      f"another device type than {generator.device.type}; the batches and noise go on from a "
                      f"generator reseeded with ({seed}, step {step}), so the run is not bit-identical to an "
                      "uninterrupted one", stacklevel=3)
        generator.manual_seed(seed * 1_000_003 + step)
        return
    generator.set_state(state.to(generator.get_state().device))


def train(model: torch.nn.Module,
          loss_fn: Callable[[torch.nn.Module, Any, torch.Generator], torch.Tensor],
          sample_batch: Callable[[int, torch.Generator], Any],
          config: TrainConfig, *, name: str, recipe_config: Any = None,
          checkpoint_path: str | Path | None = None, device: str | torch.device | None = None,
          progress: bool = True, hint: str = "", extra: dict | None = None,
          precision: str = "fp32") -> TrainResult:
    """Train ``model`` to minimise ``loss_fn(model, sample_batch(batch_size, generator), generator)``.

    Args:
        model: the network; moved to ``device``.
        loss_fn: ``(model, batch, generator) -> scalar loss``.
        sample_batch: ``(batch_size, generator) -> batch`` already on ``device``.
        config: optimisation settings.
        name: recipe name, stored in the checkpoint.
        recipe_config: the full recipe config (a frozen dataclass) stored in the checkpoint;
            resuming checks it matches, except the number of steps, which may grow.
        checkpoint_path: where to save; if the file exists the run resumes from it.
        device: ``None`` picks cuda, then mps, then cpu.
        progress: show a ``tqdm`` progress bar.
        extra: saved in every checkpoint beside the weights (e.g. the data normaliser).
        precision: ``"fp32"``; ``"bf16"`` (autocast, CPU or CUDA) or ``"fp16"`` (autocast with
            loss scaling, CUDA only). The weights, the optimizer and the EMA stay in fp32.
    Under torchrun (a process group is initialised) the model is wrapped in
    ``DistributedDataParallel``, each rank trains on its slice of the global batch
    ``config.batch_size`` and rank 0 alone writes the checkpoint.
    Returns:
        A :class:`TrainResult`; ``history`` holds ``step``, ``loss`` (mean over ``log_every``
        steps) and ``wall_time`` (seconds since the start of training, summed over resumptions).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    device = get_device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device (loss scaling); on {device.type} use 'bf16' or 'fp32'")
    ctx = distributed.current()
    if ctx is not None and config.batch_size % ctx.world_size:
        raise ValueError(f"{name}: batch_size {config.batch_size} does not split evenly over "
                         f"{ctx.world_size} processes; choose a multiple of {ctx.world_size}")
    model = model.to(device)
    ema_model = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    # one process: one generator draws the batches and the loss's noise (as it always has);
    # several: the batch generator is the same on every rank, the noise generator each rank's own
    noise_generator = generator if ctx is None else torch.Generator(device=device)
    forward = _LossModule(model, loss_fn)
    if ctx is not None:
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    autocast_dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    recipe_config = recipe_config if recipe_config is not None else config
    history: dict = {"step": [], "loss": [], "wall_time": []}
    step = 0

    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        ckpt = load_checkpoint(checkpoint_path, name=name, config=recipe_config,
                               ignore=_n_steps_fields(recipe_config), hint=hint)
        model.load_state_dict(ckpt["model_state"])
        ema_model.load_state_dict(ckpt["ema_state"] or ckpt["model_state"])
        if ckpt["optimizer_state"] is not None:
            optimizer.load_state_dict(ckpt["optimizer_state"])
        history, step = ckpt["history"], ckpt["step"]
        _restore_generator(generator, ckpt["rng_state"], seed=config.seed, step=step, name=name)
    resumed_from = step

    def save():
        if ctx is not None and not ctx.is_main:
            return
        if checkpoint_path is not None:
            hist = dict(history, pending=[running, n_running]) if n_running else history
            save_checkpoint(checkpoint_path, name=name, config=recipe_config, model=model,
                            ema_model=ema_model, optimizer=optimizer, step=step, history=hist,
                            rng_state=generator.get_state(), extra=extra)

    elapsed0 = history["wall_time"][-1] if history["wall_time"] else 0.0
    t0 = time.perf_counter()
    # the loss summed over the current logging window; kept in the checkpoint so that an
    # interrupted run logs exactly what an uninterrupted one would
    running, n_running = history.pop("pending", [0.0, 0])
    bar = tqdm(total=config.n_steps, initial=step, disable=not progress or (ctx is not None and not ctx.is_main),
               desc=name, leave=False)
    model.train()
    try:
        while step < config.n_steps:
            if config.lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.n_steps))
            batch = distributed.shard(sample_batch(config.batch_size, generator), ctx)
            if ctx is not None:  # reseeded every step, so a run resumed at any step goes on exactly
                noise_generator.manual_seed(distributed.rank_noise_seed(config.seed, ctx.rank, step))
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = forward(batch, noise_generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: loss became {loss.item()} at step {step}; "
                                         "lower the learning rate or check the data scaling")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            update_ema(ema_model, model, config.ema_decay)
            step += 1
            running += loss.item()
            n_running += 1
            if step % config.log_every == 0 or step == config.n_steps:
                running = distributed.all_reduce_mean(running, ctx, device)
                history["step"].append(step)
                history["loss"].append(running / n_running)
                history["wall_time"].append(elapsed0 + time.perf_counter() - t0)
                bar.set_postfix(loss=f"{running / n_running:.4f}")
                running, n_running = 0.0, 0
            bar.update(1)
            if step % config.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    save()
    model.eval()
    ema_model.eval()
    return TrainResult(model=model, ema_model=ema_model, step=step, history=history,
                       resumed_from=resumed_from)


def _n_steps_fields(config: Any) -> tuple[str, ...]:
    """The config fields allowed to differ when resuming: the length of training."""
    if dataclasses.is_dataclass(config):
        return tuple(f.name for f in dataclasses.fields(config) if f.name == "n_steps")
    return ("n_steps",)
