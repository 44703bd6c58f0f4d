"""Diffusion Policy's FiLM-conditioned 1D U-Net: shapes, input checks, and that the condition matters."""

import pytest
import torch

from tutorial_lib.nets.conditional_unet import ConditionalUnet1D, FiLMResidualBlock


@pytest.mark.parametrize("B,H", [(1, 4), (2, 16), (5, 32)])
def test_shapes_for_several_chunk_lengths(B, H):
    net = ConditionalUnet1D(action_dim=2, cond_dim=40, widths=(16, 32, 64), time_dim=32)
    out = net(torch.randn(B, H, 2), torch.randint(0, 100, (B,)), torch.randn(B, 40))
    assert out.shape == (B, H, 2) and torch.isfinite(out).all()


def test_the_book_policy_size():
    net = ConditionalUnet1D(action_dim=2, cond_dim=40, widths=(32, 64, 128), time_dim=64)
    assert sum(p.numel() for p in net.parameters()) == 1_180_002


def test_output_depends_on_the_condition_and_the_step():
    torch.manual_seed(0)
    net = ConditionalUnet1D(action_dim=2, cond_dim=6, widths=(16, 32), time_dim=16)
    x, t, c = torch.randn(3, 8, 2), torch.full((3,), 10), torch.randn(3, 6)
    base = net(x, t, c)
    assert not torch.allclose(base, net(x, t, c + 1.0))
    assert not torch.allclose(base, net(x, t + 50, c))
    # rows do not leak into each other: changing one row's condition changes only that row
    c2 = c.clone()
    c2[1] += 1.0
    out = net(x, t, c2)
    assert torch.allclose(out[[0, 2]], base[[0, 2]], atol=1e-6) and not torch.allclose(out[1], base[1])


def test_film_scales_and_shifts_per_channel():
    block = FiLMResidualBlock(4, 8, cond_dim=3)
    with torch.no_grad():
        block.film[1].weight.zero_()
        block.film[1].bias.copy_(torch.cat([torch.zeros(8), torch.ones(8)]))   # gamma = 0, beta = 1
    x = torch.randn(2, 4, 6)
    expected = block.block2(torch.ones(2, 8, 6)) + block.shortcut(x)
    assert torch.allclose(block(x, torch.randn(2, 3)), expected, atol=1e-6)


@pytest.mark.parametrize("x,t,c,msg", [
    (torch.randn(2, 16, 3), torch.zeros(2, dtype=torch.long), torch.randn(2, 40), r"x must have shape \(B, H, 2\)"),
    (torch.randn(2, 10, 2), torch.zeros(2, dtype=torch.long), torch.randn(2, 40), r"H = 10 must be a multiple of 4"),
    (torch.randn(2, 16, 2), torch.zeros(3, dtype=torch.long), torch.randn(2, 40), r"t must have shape \(2,\)"),
    (torch.randn(2, 16, 2), torch.zeros(2, dtype=torch.long), torch.randn(2, 20), r"cond must have shape \(2, 40\)"),
])
def test_bad_input_is_named(x, t, c, msg):
    net = ConditionalUnet1D(action_dim=2, cond_dim=40, widths=(8, 16, 32), time_dim=16)
    with pytest.raises(ValueError, match=msg):
        net(x, t, c)
