"""A time-conditioned MLP: the denoiser for low-dimensional data (points in the plane)."""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding

__all__ = ["TimeMLP", "mlp"]


def mlp(d_in: int, d_out: int, hidden: int, depth: int, activation=nn.Mish) -> nn.Sequential:
    """A plain MLP: ``depth`` times ``Linear -> activation`` of width ``hidden``, then ``Linear`` to ``d_out``.

    Shapes: ``(B, d_in) -> (B, d_out)``.
    """
    layers, width = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, d_out))


class ResidualBlock(nn.Module):
    """``h + Linear(SiLU(Linear(SiLU(LayerNorm(h))) + emb))``: a pre-norm residual block."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(self.act(self.norm(h))) + emb
        return h + self.fc2(self.act(z))


class TimeMLP(nn.Module):
    """Predict a vector field ``f(x, t)`` (noise, score, or clean data) for points ``x``.

    The time ``t`` (a diffusion step, or a log noise level) is embedded sinusoidally, passed
    through a small MLP, and added inside every residual block.

    Args:
        dim: data dimension D.
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        time_dim: size of the sinusoidal time embedding.
        time_scale: ``t`` is multiplied by this before embedding (use ~1000 for t in [0, 1]).
        out_dim: size of the output (default ``dim``); e.g. 1 for a value ``J(x, t)`` of noisy points.
    Shapes:
        x: ``(B, D)``, t: ``(B,)``  ->  ``(B, out_dim)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 64,
                 time_scale: float = 1.0, out_dim: int | None = None):
        super().__init__()
        self.dim, self.time_scale = dim, time_scale
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, hidden),
                                        nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim if out_dim is None else int(out_dim)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
        emb = self.time_embed(t * self.time_scale)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
