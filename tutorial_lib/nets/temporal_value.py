"""A value network on noisy trajectories: the down half of the temporal U-Net and a scalar head.

Diffuser's guidance (Janner et al. 2022, section 3.2) needs ``J_phi(tau_t, t)``, the return
expected of a trajectory given its *noisy* version at diffusion step ``t``, so that the sampler can
follow ``grad J`` at every step. The network reads the trajectory like the denoiser does (1D
convolutions along time, the step embedded and added in every residual block), halves the horizon
at each level, averages over what is left of time and maps that summary and the embedding to one
number::

    down, level k:  ResidualTemporalBlock x 2  ->  Conv1d(3, stride 2)  (not at the last level)
    pool:           mean over time                                   (B, C_last)
    head:           Linear(Mish(Linear([pool, emb])))                (B,)

(The reference implementation, ``diffuser/models/temporal.py: ValueFunction``, flattens instead of
pooling, which ties the network to one horizon; the mean keeps it usable at any multiple of
``2 ** (len(dim_mults) - 1)``.)
"""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding
from .temporal_unet import ResidualTemporalBlock

__all__ = ["TemporalValue"]


class TemporalValue(nn.Module):
    """``J(x, t)``: a scalar per trajectory ``x`` at diffusion step ``t``.

    Args:
        transition_dim: numbers per time step D.
        dim: base width (level k has ``dim * dim_mults[k]`` channels) and time-embedding size.
        dim_mults: width multipliers, one per level.
        kernel_size, n_groups: of every convolution block (5 and 8, as in Diffuser).
    Shapes:
        x: ``(B, H, D)``, t: ``(B,)``  ->  ``(B,)``.
    """

    def __init__(self, transition_dim: int, dim: int = 16, dim_mults: tuple[int, ...] = (1, 2, 4),
                 kernel_size: int = 5, n_groups: int = 8):
        super().__init__()
        if transition_dim < 1 or dim < 1 or len(dim_mults) < 1:
            raise ValueError(f"need transition_dim >= 1, dim >= 1 and at least one level, got "
                             f"transition_dim={transition_dim}, dim={dim}, dim_mults={tuple(dim_mults)}")
        self.transition_dim, self.dim, self.dim_mults = int(transition_dim), int(dim), tuple(dim_mults)
        widths = [dim * m for m in dim_mults]
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(),
                                      nn.Linear(4 * dim, dim))
        self.downs = nn.ModuleList()
        c_in = transition_dim
        for k, c_out in enumerate(widths):
            last = k == len(widths) - 1
            self.downs.append(nn.ModuleList([
                ResidualTemporalBlock(c_in, c_out, dim, kernel_size, n_groups),
                ResidualTemporalBlock(c_out, c_out, dim, kernel_size, n_groups),
                nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
            ]))
            c_in = c_out
        self.head = nn.Sequential(nn.Linear(widths[-1] + dim, widths[-1]), nn.Mish(), nn.Linear(widths[-1], 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.transition_dim:
            raise ValueError(f"x must have shape (B, H, {self.transition_dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), one diffusion step per trajectory, got {tuple(t.shape)}")
        emb = self.time_mlp(t)                                     # (B, dim)
        h = x.transpose(1, 2)                                      # (B, D, H)
        for res1, res2, down in self.downs:
            h = down(res2(res1(h, emb), emb))                      # (B, C_k, H / 2^(k+1))
        return self.head(torch.cat([h.mean(dim=-1), emb], dim=-1)).squeeze(-1)
