"""Checkpoints: saved atomically with their config and training history, loaded safely.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(weights_only=True)`` (no pickled objects, no code runs on load)::

    {
        "format_version": 1,            # layout of this dictionary
        "library_version": "0.1.0",     # tutorial_lib.__version__ that wrote it
        "name": "recap-ddpm",           # the recipe that produced it
        "config": {...},                # the recipe's frozen dataclass, as a dict
        "model_state": {...},           # model.state_dict()
        "ema_state": {...} or None,     # exponential-moving-average weights
        "optimizer_state": {...} or None,
        "step": 20000,                  # optimisation steps done
        "history": {"step": [...], "loss": [...], "wall_time": [...]},
        "rng_state": ByteTensor or None,  # the data/noise generator, for exact resumption
        "extra": {...},                 # what else the model needs, e.g. a data normaliser (optional)
    }
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "config_to_dict", "check_config",
           "finalize_checkpoint"]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or was made with a different config."""


def config_to_dict(config: Any) -> dict:
    """Turn a (frozen) dataclass config, or a dict, into a plain dict of primitives."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")


def save_checkpoint(path: str | os.PathLike, *, name: str, config: Any, model: torch.nn.Module,
                    ema_model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    history: dict | None = None, rng_state: torch.Tensor | None = None,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then rename.

    ``extra`` holds what the model needs beside its weights (e.g. a data normaliser), as plain
    numbers, lists, strings and tensors so that it loads with ``weights_only=True``.

    An interruption (Ctrl-C, a killed job, a full disk) leaves either the old file or the new
    one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "name": name,
        "config": config_to_dict(config),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "ema_state": None if ema_model is None else
        {k: v.detach().cpu() for k, v in ema_model.state_dict().items()},
        "optimizer_state": None if optimizer is None else optimizer.state_dict(),
        "step": int(step),
        "history": history or {},
        "rng_state": None if rng_state is None else rng_state.cpu(),
        "extra": extra or {},
    }
    _atomic_save(payload, path)
    return path


def _atomic_save(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in ``path``'s folder, flushed to disk, then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def finalize_checkpoint(path: str | os.PathLike) -> Path:
    """Drop the optimizer state of a *finished* run's checkpoint (it is half of the file, and a run
    that reached its last step has nothing left to resume), rewriting it atomically."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("optimizer_state") is None:
        return path
    ckpt["optimizer_state"] = None
    _atomic_save(ckpt, path)
    return path


def check_config(stored: dict, expected: Any, *, ignore: tuple[str, ...] = (), where: str = "") -> None:
    """Raise ``CheckpointError`` naming every field where ``stored`` and ``expected`` differ."""
    expected = config_to_dict(expected)
    keys = (set(stored) | set(expected)) - set(ignore)
    diffs = [f"{k}: checkpoint has {stored.get(k, '<missing>')!r}, expected {expected.get(k, '<missing>')!r}"
             for k in sorted(keys) if stored.get(k, "<missing>") != expected.get(k, "<missing>")]
    if diffs:
        raise CheckpointError(f"checkpoint {where + ' ' if where else ''}was made with a different config:\n  " + "\n  ".join(diffs)
                              + "\nretrain it, or build the model with the checkpoint's config")


def load_checkpoint(path: str | os.PathLike, *, name: str | None = None, config: Any = None,
                    ignore: tuple[str, ...] = (), map_location: str | torch.device = "cpu",
                    hint: str = "") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        name: if given, the recipe name the checkpoint must carry.
        config: if given, the config the checkpoint must have been made with (fields in
            ``ignore`` may differ, e.g. the number of training steps).
        hint: appended to error messages, e.g. the command that re-creates the file.
    Raises:
        CheckpointError: the file is missing, truncated or corrupt, of another format or recipe,
            or was made with a different config. The message names the file and the problem.
    """
    path = Path(path)
    suffix = f"\n{hint}" if hint else ""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{suffix}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {str(exc)[:200]}{suffix}") from exc
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model_state" not in ckpt:
        raise CheckpointError(f"{path} is a torch file but not a tutorial_lib checkpoint "
                              f"(no format_version/model_state keys){suffix}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['format_version']}, "
                              f"this library reads version {FORMAT_VERSION}{suffix}")
    if name is not None and ckpt.get("name") != name:
        raise CheckpointError(f"checkpoint {path} was made by recipe {ckpt.get('name')!r}, "
                              f"expected {name!r}{suffix}")
    if config is not None:
        check_config(ckpt["config"], config, ignore=ignore, where=str(path))
    return ckpt
