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
