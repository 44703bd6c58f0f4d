"""The temporal U-Net of Diffuser (Janner et al. 2022): a 1D convolutional U-Net over the horizon.

A trajectory is a sequence of ``H`` transitions of ``D`` numbers each, ``x: (B, H, D)``. The network
convolves along time only (the ``D`` numbers of a step are its channels), so it sees a local window
of steps and is equivariant to shifts in time; stacking levels lets distant steps interact:

    down, level k = 0 .. n-1:  ResidualTemporalBlock x 2  ->  skip_k  ->  Conv1d(3, stride 2)  (H -> H/2,
                               not at the last level)
    middle:                    ResidualTemporalBlock x 2
    up, level k = n-2 .. 0:    concat(skip_{k+1})  ->  ResidualTemporalBlock x 2 (to C_k channels)
                               ->  ConvTranspose1d(4, stride 2, padding 1)  (H -> 2H)
    out:                       Conv1dBlock  ->  Conv1d(kernel 1) back to D channels

with widths ``C_k = dim * dim_mults[k]``. Each up level starts at the resolution of the level below
it, so the skips of levels 1 .. n-1 are concatenated and the top level's is unused (as in the
reference implementation, ``diffuser/models/temporal.py``). Each ``Conv1dBlock`` is ``Conv1d(kernel 5) -> GroupNorm(8) -> Mish``;
a ``ResidualTemporalBlock`` is two of them with the diffusion-time embedding added between them, plus
a (1x1-convolved) shortcut. The time ``t`` is embedded as ``Linear(Mish(Linear(sinusoid(t))))``.

With Diffuser's maze2d settings (``dim = 32``, ``dim_mults = (1, 4, 8)``, ``D = 6``) the network has
3,682,118 parameters, the paper's "about 3.7M"; with ``dim = 16`` it has 924,070.
"""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding

__all__ = ["Conv1dBlock", "ResidualTemporalBlock", "TemporalUnet", "receptive_field"]


class Conv1dBlock(nn.Module):
    """``Mish(GroupNorm(Conv1d(x)))`` with "same" padding, so the horizon is kept.

    Shapes: x ``(B, C_in, H)``  ->  ``(B, C_out, H)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, n_groups: int = 8):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the horizon is kept, got {kernel_size}")
        if out_channels % n_groups:
            raise ValueError(f"GroupNorm needs channels divisible by n_groups = {n_groups}, got {out_channels} "
                             f"channels; choose dim and dim_mults so that every width is a multiple of {n_groups}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(n_groups, out_channels)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualTemporalBlock(nn.Module):
    """``h = block2(block1(x) + W emb) + shortcut(x)``, the time embedding added after the first block.

    ``W`` is ``Linear(Mish(.))`` mapping the embedding to ``C_out`` channels, broadcast over time;
    the shortcut is the identity, or a 1x1 convolution when ``C_in != C_out``.

    Shapes: x ``(B, C_in, H)``, emb ``(B, E)``  ->  ``(B, C_out, H)``.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, kernel_size: int = 5,
                 n_groups: int = 8):
        super().__init__()
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.time_proj = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, out_channels))
        self.shortcut = (nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels
                         else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time_proj(emb)[:, :, None]
        return self.block2(h) + self.shortcut(x)


class TemporalUnet(nn.Module):
    """Diffuser's denoiser: ``f(x, t)`` for trajectories ``x`` at diffusion step ``t``.

    Args:
        transition_dim: numbers per time step D (Diffuser: actions then observations, D = 6 in maze2d).
        dim: base width; level k has ``dim * dim_mults[k]`` channels; also the time-embedding size.
        dim_mults: width multipliers, one per level; ``len(dim_mults) - 1`` halvings of the horizon.
        kernel_size: temporal kernel of the convolution blocks (5 in Diffuser).
        n_groups: groups of every GroupNorm (8 in Diffuser).
        mask_dim: extra input channels (default 0, Diffuser's network). With ``mask_dim = M`` the
            input is ``[x, m]: (B, H, D + M)``, e.g. a 0/1 mask of the entries that inpainting pins
            (see ``diffuser.condition_mask``), and the output still ``(B, H, D)``.
    Shapes:
        x: ``(B, H, D + mask_dim)``, t: ``(B,)`` diffusion steps  ->  ``(B, H, D)``. ``H`` must be a
        multiple of ``2 ** (len(dim_mults) - 1)`` (4 with three levels); any such ``H`` works with the
        same weights.
    """

    def __init__(self, transition_dim: int, dim: int = 32, dim_mults: tuple[int, ...] = (1, 4, 8),
                 kernel_size: int = 5, n_groups: int = 8, mask_dim: int = 0):
        super().__init__()
        if transition_dim < 1 or dim < 1 or len(dim_mults) < 1 or min(dim_mults) < 1:
            raise ValueError(f"need transition_dim >= 1, dim >= 1 and positive dim_mults, got transition_dim="
                             f"{transition_dim}, dim={dim}, dim_mults={tuple(dim_mults)}")
        self.transition_dim, self.dim, self.dim_mults = int(transition_dim), int(dim), tuple(dim_mults)
        self.mask_dim = int(mask_dim)
        widths = [dim * m for m in dim_mults]
        embed_dim = dim

        def block(c_in, c_out):
            return ResidualTemporalBlock(c_in, c_out, embed_dim, kernel_size, n_groups)

        self.time_mlp = nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(),
                                      nn.Linear(4 * dim, dim))
        self.downs = nn.ModuleList()
        c_in = transition_dim + self.mask_dim
        for k, c_out in enumerate(widths):
            last = k == len(widths) - 1
            self.downs.append(nn.ModuleList([
                block(c_in, c_out), block(c_out, c_out),
                nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
            ]))
            c_in = c_out
        self.mid1, self.mid2 = block(widths[-1], widths[-1]), block(widths[-1], widths[-1])
        self.ups = nn.ModuleList()
        # going up: level k receives level k+1's output concatenated with level k+1's skip
        for k in reversed(range(len(widths) - 1)):
            c_deep = widths[k + 1]
            self.ups.append(nn.ModuleList([
                block(2 * c_deep, widths[k]), block(widths[k], widths[k]),
                nn.ConvTranspose1d(widths[k], widths[k], 4, stride=2, padding=1),
            ]))
        self.final = nn.Sequential(Conv1dBlock(dim, dim, kernel_size, n_groups), nn.Conv1d(dim, transition_dim, 1))
        if widths[0] != dim:
            raise ValueError(f"dim_mults must start with 1 so the last level has dim = {dim} channels, "
                             f"got dim_mults={tuple(dim_mults)}")

    @property
    def horizon_multiple(self) -> int:
        """Horizons must be multiples of this: ``2 ** (len(dim_mults) - 1)``."""
        return 2 ** (len(self.dim_mults) - 1)

    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem when ``x`` or ``t`` has the wrong shape."""
        width = self.transition_dim + self.mask_dim
        if x.ndim != 3 or x.shape[-1] != width:
            what = f"{self.transition_dim}" if not self.mask_dim else f"{self.transition_dim} + mask {self.mask_dim}"
            raise ValueError(f"x must have shape (B, H, D) = (batch, horizon, {what}), got {tuple(x.shape)}")
        if x.shape[1] % self.horizon_multiple:
            m, h = self.horizon_multiple, x.shape[1]
            raise ValueError(f"horizon H = {h} must be a multiple of {m} = 2^{len(self.dim_mults) - 1} (one halving "
                             f"per level below the top, dim_mults={self.dim_mults}); "
                             f"e.g. {max(m, h // m * m)} or {(h // m + 1) * m}")
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},), one diffusion step per trajectory, "
                             f"got {tuple(t.shape)}")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_input(x, t)
        emb = self.time_mlp(t)                        # (B, dim)
        h = x.transpose(1, 2)                         # (B, D, H): time steps along the last axis
        skips = []
        for k, (res1, res2, down) in enumerate(self.downs):
            h = res2(res1(h, emb), emb)               # (B, C_k, H / 2^k)
            if k > 0:
                skips.append(h)                       # levels 1 .. n-1 are skipped across
            h = down(h)                               # -> (B, C_k, H / 2^(k+1)), except at the last level
        h = self.mid2(self.mid1(h, emb), emb)
        for res1, res2, up in self.ups:
            h = torch.cat([h, skips.pop()], dim=1)    # (B, 2 C_{k+1}, H / 2^(k+1))
            h = res2(res1(h, emb), emb)               # (B, C_k, H / 2^(k+1))
            h = up(h)                                 # (B, C_k, H / 2^k)
        return self.final(h).transpose(1, 2)          # (B, H, D)


class _FrozenStatsGroupNorm(nn.GroupNorm):
    """GroupNorm whose mean and variance are treated as constants by autograd (same forward values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h = x.shape
        g = x.reshape(b, self.num_groups, -1)
        mean = g.mean(-1, keepdim=True).detach()
        var = g.var(-1, unbiased=False, keepdim=True).detach()
        y = ((g - mean) / torch.sqrt(var + self.eps)).reshape(b, c, h)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


def receptive_field(net: TemporalUnet, horizon: int, step: int | None = None, t: int = 0, n_inputs: int = 8,
                    radii=(1, 2, 4, 8), seed: int = 0) -> dict:
    """Which input steps an output step of ``net`` depends on, measured by gradients.

    The convolutions give each output step a finite window of input steps; GroupNorm's statistics
    are taken over all steps, so through them every step touches every other, weakly. For output
    ``step`` (default: the middle) of a horizon ``horizon``, at diffusion step ``t``, over
    ``n_inputs`` random inputs, this returns

    - ``window``: ``(first, last)`` input steps with a nonzero gradient when GroupNorm's statistics
      are held fixed (the convolutional receptive field, clipped to the horizon), and ``size``;
    - ``mass_in_window``: the share of the real network's gradient (absolute values summed over
      channels and inputs) that falls inside that window;
    - ``mass_near``: ``{k: share}``, the share of it within ``k`` steps of ``step``, for ``k`` in ``radii``.
    """
    import copy

    step = horizon // 2 if step is None else int(step)
    if not 0 <= step < horizon:
        raise ValueError(f"step must lie in [0, horizon = {horizon}), got {step}")
    frozen = copy.deepcopy(net).eval()
    for module in list(frozen.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                new = _FrozenStatsGroupNorm(child.num_groups, child.num_channels, child.eps)
                new.load_state_dict(child.state_dict())
                setattr(module, child_name, new)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_inputs, horizon, net.transition_dim + net.mask_dim, generator=g)
    tt = torch.full((n_inputs,), int(t), dtype=torch.long)
    grads = []
    for model in (frozen, copy.deepcopy(net).eval()):
        xi = x.clone().requires_grad_(True)
        model(xi, tt)[:, step].sum().backward()
        grads.append(xi.grad.abs().sum(dim=(0, 2)))                  # (H,)
    support = torch.nonzero(grads[0] > 0).flatten()
    first, last = int(support.min()), int(support.max())
    total = grads[1].sum()
    near = {int(k): float(grads[1][max(0, step - k):step + k + 1].sum() / total) for k in radii}
    return {"step": step, "horizon": horizon, "t": int(t), "window": (first, last), "size": last - first + 1,
            "mass_in_window": float(grads[1][first:last + 1].sum() / total), "mass_near": near}
