"""Diffusion Policy's denoiser (Chi et al. 2023): a 1D U-Net over an action chunk, FiLM-conditioned.

The noisy action chunk ``a_t: (B, H, A)`` is the "image"; its ``A`` numbers per step are channels and
the convolutions run along the chunk's ``H`` steps, as in Diffuser's temporal U-Net
(:mod:`tutorial_lib.nets.temporal_unet`). What differs is how the network is told what it sees:
the observations are not part of the sequence but a *global condition*. The diffusion-step embedding
and the flattened observation history form one vector ``c``, and every residual block modulates its
features with it, feature-wise (FiLM, Perez et al. 2018)::

    h = Conv1dBlock(x)                                   (B, C, H)
    gamma, beta = Linear(Mish(c)).split(C)               (B, C) each
    h = gamma * h + beta                                 broadcast over the H steps
    out = Conv1dBlock(h) + shortcut(x)

so the observation can scale features up or down, not only shift them. The levels are those of the
temporal U-Net: two blocks per level, a stride-2 convolution between levels, a transposed
convolution on the way up, skips concatenated. With the paper's widths ``(256, 512, 1024)`` the
network has about 65M parameters; ``(64, 128, 256)`` about 4.6M; the book's Push-T policy uses
``(32, 64, 128)`` (1.2M), which takes about 3 ms per call on one CPU core.
"""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding
from .temporal_unet import Conv1dBlock

__all__ = ["FiLMResidualBlock", "ConditionalUnet1D"]


class FiLMResidualBlock(nn.Module):
    """``block2(gamma(c) * block1(x) + beta(c)) + shortcut(x)``.

    Shapes: x ``(B, C_in, H)``, c ``(B, K)``  ->  ``(B, C_out, H)``.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int = 5,
                 n_groups: int = 8):
        super().__init__()
        self.out_channels = out_channels
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.shortcut = (nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels
                         else nn.Identity())

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(c)[:, :, None].split(self.out_channels, dim=1)
        h = gamma * self.block1(x) + beta
        return self.block2(h) + self.shortcut(x)


class ConditionalUnet1D(nn.Module):
    """``eps_theta(a_t, t, o)``: the noise in an action chunk given the diffusion step and observations.

    Args:
        action_dim: numbers per action A (2 for Push-T: a target position).
        cond_dim: size of the flattened observation history (``n_obs_steps * obs_dim``).
        widths: channels per level; ``len(widths) - 1`` halvings of the chunk length.
        time_dim: size of the diffusion-step embedding.
        kernel_size, n_groups: of every convolution block.
    Shapes:
        x: ``(B, H, A)`` noisy chunk, t: ``(B,)`` steps, cond: ``(B, cond_dim)``  ->  ``(B, H, A)``.
        ``H`` must be a multiple of ``2 ** (len(widths) - 1)``.
    """

    def __init__(self, action_dim: int, cond_dim: int, widths: tuple[int, ...] = (64, 128, 256),
                 time_dim: int = 128, kernel_size: int = 5, n_groups: int = 8):
        super().__init__()
        if action_dim < 1 or cond_dim < 1 or len(widths) < 1:
            raise ValueError(f"need action_dim >= 1, cond_dim >= 1 and at least one width, got action_dim="
                             f"{action_dim}, cond_dim={cond_dim}, widths={tuple(widths)}")
        self.action_dim, self.cond_dim, self.widths = int(action_dim), int(cond_dim), tuple(widths)
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, 4 * time_dim),
                                      nn.Mish(), nn.Linear(4 * time_dim, time_dim))
        k = time_dim + cond_dim

        def block(c_in, c_out):
            return FiLMResidualBlock(c_in, c_out, k, kernel_size, n_groups)

        self.downs = nn.ModuleList()
        c_in = action_dim
        for level, c_out in enumerate(widths):
            last = level == len(widths) - 1
            self.downs.append(nn.ModuleList([
                block(c_in, c_out), block(c_out, c_out),
                nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)]))
            c_in = c_out
        self.mid = nn.ModuleList([block(widths[-1], widths[-1]), block(widths[-1], widths[-1])])
        self.ups = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            self.ups.append(nn.ModuleList([
                block(2 * widths[level + 1], widths[level]), block(widths[level], widths[level]),
                nn.ConvTranspose1d(widths[level], widths[level], 4, stride=2, padding=1)]))
        self.final = nn.Sequential(Conv1dBlock(widths[0], widths[0], kernel_size, n_groups),
                                   nn.Conv1d(widths[0], action_dim, 1))

    @property
    def horizon_multiple(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.action_dim:
            raise ValueError(f"x must have shape (B, H, {self.action_dim}), got {tuple(x.shape)}")
        if x.shape[1] % self.horizon_multiple:
            raise ValueError(f"the chunk length H = {x.shape[1]} must be a multiple of {self.horizon_multiple} "
                             f"for {len(self.widths)} levels")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
        if cond.shape != (x.shape[0], self.cond_dim):
            raise ValueError(f"cond must have shape ({x.shape[0]}, {self.cond_dim}) to match x, "
                             f"got {tuple(cond.shape)}")
        c = torch.cat([self.time_mlp(t), cond], dim=-1)
        h = x.transpose(1, 2)                                   # (B, A, H): channels first
        skips = []
        for block1, block2, down in self.downs:
            h = block2(block1(h, c), c)
            skips.append(h)
            h = down(h)
        for blk in self.mid:
            h = blk(h, c)
        for block1, block2, up in self.ups:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(block2(block1(h, c), c))
        return self.final(h).transpose(1, 2)

    def bind(self, cond: torch.Tensor):
        """``(x, t) -> forward(x, t, cond)``: the two-argument denoiser a sampler calls."""
        return lambda x, t: self(x, t, cond)
