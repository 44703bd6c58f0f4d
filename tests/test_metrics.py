"""Energy distance and the quality ratio."""

import pytest
import torch

from tutorial_lib.diffusion.metrics import energy_distance, quality_ratio


def test_energy_distance_properties():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    same, shifted = energy_distance(x, y), energy_distance(x, y + 1.0)
    assert 0 < same < 0.01 < shifted
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x))


def test_energy_distance_of_known_shift():
    # for two point masses at distance d the energy distance is 2d
    assert energy_distance(torch.zeros(3, 2), torch.tensor([[3.0, 4.0]] * 2)) == pytest.approx(10.0)


def test_quality_ratio_near_one_for_fresh_data_and_large_for_bad_samples():
    g = torch.Generator().manual_seed(1)
    draw = lambda: torch.randn(2000, 2, generator=g)
    heldout = draw()
    assert 0.5 < quality_ratio(draw(), draw(), heldout) < 2.0
    assert quality_ratio(draw() * 1.5, draw(), heldout) > 5.0
    with pytest.raises(ValueError, match="same size"):
        quality_ratio(draw(), torch.randn(10, 2), heldout)


def test_grid_mixture_layout():
    from tutorial_lib.diffusion.toy_data import grid_mixture

    m = grid_mixture(n_side=3, spacing=2.0, std=0.5)
    assert sorted(map(tuple, m.means.tolist())) == [(x, y) for x in (-2.0, 0.0, 2.0) for y in (-2.0, 0.0, 2.0)]
    assert torch.allclose(m.covs, 0.25 * torch.eye(2).expand(9, 2, 2))
    assert torch.allclose(m.weights, torch.full((9,), 1 / 9))
    with pytest.raises(ValueError):
        grid_mixture(std=0.0)


def test_mode_coverage_counts_modes_and_off_mode_points():
    from tutorial_lib.diffusion.toy_data import GaussianMixture

    m = GaussianMixture(means=[[0.0, 0.0], [10.0, 0.0]], covs=[1.0, 1.0], weights=[0.5, 0.5])
    on_first = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [2.9, 0.0]])   # all within 3 sd of mode 0
    assert m.mode_coverage(on_first) == (0.5, 0.0)
    # 2 of 8 points on mode 1, half of its expected 4 (w = 0.5): covered at min_share 0.5
    both = torch.cat([on_first, torch.tensor([[10.0, 0.0], [10.0, 1.0]]), torch.tensor([[5.0, 0.0], [5.0, 5.0]])])
    covered, off = m.mode_coverage(both, min_share=0.5)
    assert covered == 1.0 and off == pytest.approx(2 / 8)
    assert m.mode_coverage(both, min_share=0.6)[0] == 0.5          # 2 < 0.6 * 0.5 * 8 = 2.4
    assert m.mode_coverage(both, max_distance=2.0)[1] == pytest.approx(3 / 8)   # (0, -2) is on; (2.9, 0) is not
