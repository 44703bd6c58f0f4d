"""Denoising score matching: the noise scales it draws, its loss, and the noise-conditional score network."""

import math

import pytest
import torch

from tutorial_lib.diffusion.score_matching import NoiseConditionalScoreNet, dsm_loss, sample_sigmas


def test_noise_scales_are_log_uniform_between_the_bounds():
    """log sigma is uniform on [log 0.01, log 100]: a quarter of the draws per decade, median 1 (uniform: ~50)."""
    sigmas = sample_sigmas(20_000, 0.01, 100.0, torch.Generator().manual_seed(0))
    assert sigmas.shape == (20_000,) and sigmas.min() >= 0.01 and sigmas.max() <= 100.0
    logs = sigmas.log10()
    for lo in (-2, -1, 0, 1):
        share = ((logs >= lo) & (logs < lo + 1)).float().mean().item()
        assert share == pytest.approx(0.25, abs=0.015), (lo, share)
    assert sigmas.median().item() == pytest.approx(1.0, rel=0.1)
    assert sigmas.min().item() < 0.0105 and sigmas.max().item() > 95.0        # the whole range is reached


class ExactScore(torch.nn.Module):
    """The exact score of ``p_sigma = N(mu, sigma^2 I)``, noised data of a point mass at ``mu``: ``-(x - mu) / sigma^2``."""

    def __init__(self, mu):
        super().__init__()
        self.mu = mu

    def forward(self, x, sigma):
        return -(x - self.mu) / sigma[:, None] ** 2


def test_dsm_loss_is_zero_for_the_exact_score_and_sigma_weighted_otherwise():
    mu = torch.tensor([1.5, -0.5])
    x = mu.expand(4000, 2)
    assert dsm_loss(ExactScore(mu), x, 0.1, 10.0, torch.Generator().manual_seed(0)).item() < 1e-8
    # a score of zero: E || sigma * 0 + eps ||^2 = D = 2 at every scale (the sigma^2 weighting)
    zero = lambda x, s: torch.zeros_like(x)  # noqa: E731
    assert dsm_loss(zero, x, 0.1, 10.0, torch.Generator().manual_seed(0)).item() == pytest.approx(2.0, abs=0.1)
    # an offset score c: E || sigma c + eps ||^2 = D + c^2 E[sigma^2] (E[sigma^2] of the log-uniform law)
    c, lo, hi = 0.5, 0.1, 2.0
    offset = lambda x, s: torch.full_like(x, c)  # noqa: E731
    e_sigma2 = (hi ** 2 - lo ** 2) / (2 * math.log(hi / lo))
    got = dsm_loss(offset, x, lo, hi, torch.Generator().manual_seed(1)).item()
    assert got == pytest.approx(2 + 2 * c ** 2 * e_sigma2, rel=0.03)


def test_score_network_divides_by_sigma_and_takes_its_log():
    torch.manual_seed(0)
    net = NoiseConditionalScoreNet(dim=2, hidden=16, depth=2)
    x = torch.randn(5, 2)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0])
    out = net(x, sigma)
    torch.testing.assert_close(out, net.net(x, sigma.log()) / sigma[:, None])
    torch.testing.assert_close(net(x, 0.5), net.net(x, torch.full((5,), math.log(0.5))) / 0.5)


def test_draws_repeat_with_the_generator_and_follow_the_device():
    """The generator drives every draw (same seed, same numbers; the global RNG is not used), and the tensors
    are made on the data's device (the "meta" device stands in for a GPU: a CPU tensor would show)."""
    a = sample_sigmas(100, 0.1, 10.0, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    b = sample_sigmas(100, 0.1, 10.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sample_sigmas(4, 0.1, 10.0, device="meta").device.type == "meta"
    x = torch.randn(64, 2)
    net = lambda x, s: torch.sin(x) / s[:, None]  # noqa: E731
    losses = []
    for _ in range(2):
        torch.manual_seed(len(losses))                       # a different global RNG state each time
        losses.append(dsm_loss(net, x, 0.1, 10.0, torch.Generator().manual_seed(9)).item())
    assert losses[0] == losses[1]
    seen = []
    dsm_loss(lambda x, s: seen.append((x.device.type, s.device.type)) or x, x.to("meta"), 0.1, 10.0)
    assert seen == [("meta", "meta")]


def test_score_network_defaults_and_layout():
    """The documented defaults (2-D points, width 128, 3 residual blocks) and the log-sigma scale 100 of the time input."""
    net = NoiseConditionalScoreNet()
    assert net.net.dim == 2 and net.net.time_scale == 100.0
    assert net.net.inp.in_features == 2 and net.net.inp.out_features == 128 and len(net.net.blocks) == 3
    small = NoiseConditionalScoreNet(dim=3, hidden=8, depth=1)
    assert small.net.dim == 3 and small.net.inp.out_features == 8 and len(small.net.blocks) == 1
    assert small(torch.randn(4, 3), 0.5).shape == (4, 3)


def test_score_network_casts_sigma_to_the_data_dtype_and_device():
    """A float sigma becomes a tensor of x's dtype (float64 in, float64 out) on x's device ("meta" stands in for a GPU)."""
    torch.manual_seed(0)
    net = NoiseConditionalScoreNet(dim=2, hidden=8, depth=1).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    for sigma in (0.3, torch.tensor([0.5, 1.0, 2.0], dtype=torch.float32)):      # 0.3: not exact in float32
        out = net(x, sigma)
        assert out.dtype == torch.float64
        s = torch.as_tensor(sigma, dtype=torch.float64).expand(3)
        torch.testing.assert_close(out, net.net(x, s.log()) / s[:, None], rtol=0, atol=0)
    assert net.to("meta")(x.to("meta"), 0.5).device.type == "meta"
