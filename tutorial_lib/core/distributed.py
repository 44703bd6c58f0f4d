"""Data-parallel training over several processes: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc_per_node=N -m tutorial_lib.train NAME`` starts N copies of the training
command (on one machine, or on several with ``--nnodes``); each learns its place from the
environment variables torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...). This module joins them into one process group, with the NCCL backend
when they train on GPUs and gloo on CPUs, and says how a global batch is split among them.

How the book's training loop (:func:`tutorial_lib.core.training.train`) uses it:

* every rank draws the **same global batch** (same seed, same generator) and keeps its own
  slice of it, ``B / N`` rows (:func:`shard`); ``DistributedDataParallel`` averages the
  gradients, so one step is a step on the mean loss of the global batch, as with one process;
* the noise inside the loss (diffusion time steps, Gaussian noise) comes from a generator of
  each rank's own, seeded from ``(seed, rank, step)`` before every step
  (:func:`rank_noise_seed`), so that a killed run resumed from its last checkpoint ends exactly
  where an uninterrupted one would (the batch generator's state is in the checkpoint);
* rank 0 alone writes the checkpoint (atomically, as always); it holds everything a resumed
  run needs, because the weights, the optimizer and the data generator are the same on every rank.

Nothing here starts processes: torchrun does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "current", "init_from_environment", "launched_by_torchrun", "shard",
           "rank_noise_seed", "all_reduce_mean", "destroy"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in its process group.

    Attributes:
        rank: 0 .. world_size - 1 over all machines; rank 0 writes checkpoints and logs.
        local_rank: the rank on this machine (picks the GPU ``cuda:local_rank``).
        world_size: number of processes training together.
        backend: ``"nccl"`` (GPUs) or ``"gloo"`` (CPUs).
    """

    rank: int
    local_rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher setting ``WORLD_SIZE`` and ``RANK``) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def current() -> DistributedContext | None:
    """The context of the initialised process group, or ``None`` when training in one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return DistributedContext(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                              world_size=dist.get_world_size(), backend=str(dist.get_backend()))


def init_from_environment(device: str | torch.device | None = None) -> tuple[DistributedContext | None, torch.device | None]:
    """Join the process group torchrun prepared; returns ``(context, device)``.

    Outside torchrun this does nothing and returns ``(None, device)``. Under torchrun the device
    is ``cuda:LOCAL_RANK`` with NCCL when CUDA is available and ``device`` is not ``"cpu"``,
    else the CPU with gloo.

    Raises:
        RuntimeError: the environment names more local ranks than there are GPUs, or asks for
            CUDA where there is none.
    """
    if not launched_by_torchrun():
        return None, None if device is None else torch.device(device)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE is set (started by torchrun?) but this PyTorch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wanted = None if device is None else torch.device(device)
    use_cuda = torch.cuda.is_available() and (wanted is None or wanted.type == "cuda")
    if wanted is not None and wanted.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for under torchrun, but CUDA is not available here")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                               "start torchrun with --nproc_per_node at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current(), chosen


def shard(batch: Any, ctx: DistributedContext | None) -> Any:
    """This rank's slice of a global batch: rows ``[r B/N, (r+1) B/N)`` of every tensor in ``batch``.

    ``batch`` is a tensor or a tuple/list/dict of tensors whose first dimension is the batch.
    With ``ctx=None`` (one process) the batch is returned whole.

    Raises:
        ValueError: the global batch does not divide evenly among the ranks.
    """
    if ctx is None or ctx.world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0]
        if n % ctx.world_size:
            raise ValueError(f"the global batch of {n} rows does not split evenly over {ctx.world_size} processes; "
                             "choose a batch size divisible by the number of processes")
        per = n // ctx.world_size
        return batch[ctx.rank * per:(ctx.rank + 1) * per]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(b, ctx) for b in batch)
    if isinstance(batch, dict):
        return {k: shard(v, ctx) for k, v in batch.items()}
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}; "
                    "sample_batch must return a tensor or a tuple/list/dict of tensors")


def rank_noise_seed(seed: int, rank: int, step: int) -> int:
    """Seed of rank ``rank``'s noise generator from step ``step`` on (a fixed mix, < 2**63)."""
    return (int(seed) * 1_000_003 + (int(rank) + 1) * 998_244_353 + int(step) * 1_000_000_007) % (2**63 - 1)


def all_reduce_mean(value: float, ctx: DistributedContext | None, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (the value itself in one process)."""
    if ctx is None or ctx.world_size == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item() / ctx.world_size


def destroy() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
