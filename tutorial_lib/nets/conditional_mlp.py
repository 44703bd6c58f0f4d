"""A time- and observation-conditioned MLP: the denoiser of a diffusion policy ``p(a | s)``."""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding
from .mlp import ResidualBlock

__all__ = ["ConditionalTimeMLP"]


class ConditionalTimeMLP(nn.Module):
    """Predict a vector field ``f(x, t, c)`` for points ``x`` given a condition ``c`` (an observation).

    As in :class:`~tutorial_lib.nets.mlp.TimeMLP`, the diffusion step ``t`` is embedded
    sinusoidally; the condition ``c`` goes through its own small MLP, and the sum of the two
    embeddings is added inside every residual block::

        emb = MLP_t(sinusoid(t)) + MLP_c(c),   h_{k+1} = h_k + Linear(SiLU(Linear(SiLU(LN(h_k))) + emb)).

    A diffusion sampler calls ``model(x_t, t)``; bind the condition first, e.g.
    ``lambda x, t: net(x, t, obs)`` (:meth:`bind` does this).

    Args:
        dim: data dimension D (e.g. ``action_horizon * action_dim`` for an action chunk).
        cond_dim: condition dimension C (e.g. the state size).
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        time_dim: size of the sinusoidal time embedding.
    Shapes:
        x: ``(B, D)``, t: ``(B,)``, cond: ``(B, C)``  ->  ``(B, D)``.
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 64):
        super().__init__()
        self.dim, self.cond_dim = dim, cond_dim
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, hidden),
                                        nn.SiLU(), nn.Linear(hidden, hidden))
        self.cond_embed = nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
        if cond.shape != (x.shape[0], self.cond_dim):
            raise ValueError(f"cond must have shape ({x.shape[0]}, {self.cond_dim}) to match x, "
                             f"got {tuple(cond.shape)}")
        emb = self.time_embed(t) + self.cond_embed(cond)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)

    def bind(self, cond: torch.Tensor):
        """The denoiser ``(x, t) -> f(x, t, cond)`` with the condition fixed, for the samplers."""
        return lambda x, t: self(x, t, cond)
