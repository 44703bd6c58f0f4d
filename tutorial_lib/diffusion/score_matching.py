"""Denoising score matching (Vincent 2011) and a noise-conditional score network (Song & Ermon 2019)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nets.mlp import TimeMLP

__all__ = ["NoiseConditionalScoreNet", "sample_sigmas", "dsm_loss"]


class NoiseConditionalScoreNet(nn.Module):
    """``s_theta(x, sigma) = f_theta(x, log sigma) / sigma``, an estimate of ``grad log p_sigma(x)``.

    Dividing by sigma lets the network output numbers of order one at every noise scale,
    since the true score of ``p_sigma`` has magnitude about ``1 / sigma`` (Song & Ermon 2020).

    Shapes: x ``(B, D)``, sigma ``(B,)`` or a float  ->  ``(B, D)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.net = TimeMLP(dim=dim, hidden=hidden, depth=depth, time_scale=100.0)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        return self.net(x, sigma.log()) / sigma[:, None]


def sample_sigmas(n: int, sigma_min: float, sigma_max: float,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Noise scales drawn log-uniformly in ``[sigma_min, sigma_max]``. Returns ``(n,)``."""
    u = torch.rand(n, generator=generator, device=device)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def dsm_loss(score_net: nn.Module, x: torch.Tensor, sigma_min: float, sigma_max: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching, weighted by ``sigma^2`` across noise scales.

    For ``x_tilde = x + sigma eps`` the score of the noising kernel is ``-(x_tilde - x) / sigma^2
    = -eps / sigma``, and (Vincent 2011) regressing onto it learns ``grad log p_sigma``::

        L = E_{sigma, x, eps} sigma^2 || s(x_tilde, sigma) + eps / sigma ||^2
          = E || sigma s(x_tilde, sigma) + eps ||^2.

    Shapes: x ``(B, D)`` clean data.
    """
    sigma = sample_sigmas(x.shape[0], sigma_min, sigma_max, generator, x.device)
    eps = torch.randn(x.shape, generator=generator, device=x.device)
    x_tilde = x + sigma[:, None] * eps
    return ((sigma[:, None] * score_net(x_tilde, sigma) + eps) ** 2).sum(-1).mean()
