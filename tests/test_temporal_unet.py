"""Diffuser's temporal U-Net: shapes, parameter count, input checks, and what it depends on."""

import pytest
import torch

from tutorial_lib.nets import TemporalUnet


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("B,H", [(1, 4), (2, 16), (3, 128), (1, 384)])
def test_shapes_for_several_horizons_and_batches(B, H):
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4))
    out = net(torch.randn(B, H, 6), torch.randint(0, 64, (B,)))
    assert out.shape == (B, H, 6)
    assert torch.isfinite(out).all()


def test_four_levels_need_horizons_divisible_by_8():
    net = TemporalUnet(transition_dim=3, dim=8, dim_mults=(1, 2, 2, 4))
    assert net.horizon_multiple == 8
    assert net(torch.randn(2, 24, 3), torch.zeros(2, dtype=torch.long)).shape == (2, 24, 3)
    with pytest.raises(ValueError, match=r"horizon H = 20 must be a multiple of 8"):
        net(torch.randn(2, 20, 3), torch.zeros(2, dtype=torch.long))


def test_maze2d_size_matches_the_paper():
    # Janner et al. 2022: about 3.7M parameters for maze2d (dim 32, multipliers 1, 4, 8), D = 2 + 4
    net = TemporalUnet(transition_dim=6, dim=32, dim_mults=(1, 4, 8))
    assert n_params(net) == 3_682_118
    assert abs(n_params(net) - 3.7e6) / 3.7e6 < 0.01


@pytest.mark.parametrize("H", [6, 126, 130])
def test_bad_horizon_is_named(H):
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4))
    with pytest.raises(ValueError, match=rf"horizon H = {H} must be a multiple of 4"):
        net(torch.randn(2, H, 6), torch.zeros(2, dtype=torch.long))


def test_bad_shapes_are_named():
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, H, D\) = \(batch, horizon, 6\)"):
        net(torch.randn(2, 16, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have shape"):
        net(torch.randn(16, 6), torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\)"):
        net(torch.randn(2, 16, 6), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="GroupNorm needs channels divisible by n_groups = 8"):
        TemporalUnet(transition_dim=6, dim=12, dim_mults=(1, 2))
    with pytest.raises(ValueError, match="dim_mults must start with 1"):
        TemporalUnet(transition_dim=6, dim=8, dim_mults=(2, 4))


def test_output_depends_on_time_and_on_distant_steps():
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4)).eval()
    x = torch.randn(1, 32, 6)
    t0, t1 = torch.zeros(1, dtype=torch.long), torch.full((1,), 50)
    assert not torch.allclose(net(x, t0), net(x, t1))
    # a change at the last step reaches the first one through the down-sampled levels
    x2 = x.clone()
    x2[0, -1] += 1.0
    assert (net(x, t0)[0, 0] - net(x2, t0)[0, 0]).abs().max() > 1e-6


def test_batch_elements_are_independent():
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4)).eval()
    x, t = torch.randn(3, 16, 6), torch.tensor([0, 5, 9])
    full = net(x, t)
    assert torch.allclose(full[1:2], net(x[1:2], t[1:2]), atol=1e-5)


def test_gradients_reach_every_parameter():
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4))
    net(torch.randn(2, 16, 6), torch.tensor([1, 2])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_receptive_field_of_a_one_level_net_is_its_convolutions():
    from tutorial_lib.nets.temporal_unet import receptive_field

    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=2, dim=8, dim_mults=(1,))
    # one level: two residual blocks of two 5-wide convolutions down, two in the middle, then the
    # output block's one: 9 convolutions, each adding 2 steps on either side
    r = receptive_field(net, 64)
    assert r["window"] == (32 - 18, 32 + 18) and r["size"] == 37
    assert 0.5 < r["mass_in_window"] <= 1.0                  # the rest leaks through GroupNorm's statistics
    assert r["mass_near"][1] < r["mass_near"][8] <= r["mass_in_window"]
    edge = receptive_field(net, 64, step=0)
    assert edge["window"] == (0, 18)
    with pytest.raises(ValueError, match="step"):
        receptive_field(net, 16, step=16)
