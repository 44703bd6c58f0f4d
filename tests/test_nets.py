"""Shapes and input checks of the networks."""

import pytest
import torch

from tutorial_lib.nets import SinusoidalEmbedding, TimeMLP
from tutorial_lib.diffusion.score_matching import NoiseConditionalScoreNet


@pytest.mark.parametrize("B,D", [(1, 2), (7, 2), (4, 5)])
def test_time_mlp_shapes(B, D):
    net = TimeMLP(dim=D, hidden=32, depth=2)
    out = net(torch.randn(B, D), torch.randint(0, 1000, (B,)))
    assert out.shape == (B, D)


def test_time_mlp_depends_on_time():
    net = TimeMLP(dim=2, hidden=32, depth=2)
    x = torch.randn(3, 2)
    assert not torch.allclose(net(x, torch.zeros(3)), net(x, torch.full((3,), 500.0)))


def test_time_mlp_bad_shapes():
    net = TimeMLP(dim=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        net(torch.randn(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        net(torch.randn(3, 2), torch.zeros(4))


def test_sinusoidal_embedding():
    emb = SinusoidalEmbedding(8)(torch.tensor([0.0, 1.0]))
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(7)


def test_noise_conditional_score_net_scales_with_sigma():
    net = NoiseConditionalScoreNet(dim=2, hidden=16, depth=1)
    x = torch.randn(5, 2)
    out_small, out_big = net(x, 0.1), net(x, torch.full((5,), 1.0))
    assert out_small.shape == (5, 2)
    # same network output divided by sigma: only the time input differs, so compare via the net
    torch.testing.assert_close(out_small * 0.1, net.net(x, torch.full((5,), 0.1).log()))
    torch.testing.assert_close(out_big, net.net(x, torch.zeros(5)))
