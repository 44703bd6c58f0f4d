"""Device choice and seeding: the two lines every notebook starts with."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["get_device", "manual_seed"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``device=None`` picks the best available one: CUDA, then Apple's MPS, then the CPU.
    A string such as ``"cpu"`` or ``"cuda:1"`` is checked and returned as a ``torch.device``.
    """
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was asked for, but CUDA is not available here; "
                               "use device=None to pick the best available device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def manual_seed(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and return a ``torch.Generator`` seeded with ``seed``.

    Samplers in this library take ``generator=``: pass the returned generator so that a
    lesson's numbers repeat from run to run.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator
