"""Sinusoidal embeddings of the diffusion time (Vaswani et al. 2017; Ho et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SinusoidalEmbedding"]


class SinusoidalEmbedding(nn.Module):
    """Map a scalar time ``t`` to ``[sin(t w_k), cos(t w_k)]`` with ``w_k = 10000^{-k/(d/2-1)}``.

    Args:
        dim: embedding size (even).
    Shapes:
        t: ``(B,)`` integer or float times  ->  ``(B, dim)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"embedding dim must be an even number >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 1:
            raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)
