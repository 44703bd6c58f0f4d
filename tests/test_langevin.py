"""Langevin dynamics, annealed Langevin dynamics, and the analytic mixture scores they use."""

import pytest
import torch

from tutorial_lib.diffusion.langevin import annealed_langevin_dynamics, geometric_sigmas, langevin_dynamics
from tutorial_lib.diffusion.toy_data import GaussianMixture, song_ermon_mixture, six_mode_mixture


def test_langevin_recovers_a_gaussian():
    mean, std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    score = lambda x: -(x - mean) / std ** 2
    g = torch.Generator().manual_seed(0)
    x = langevin_dynamics(score, torch.zeros(20_000, 2), step_size=0.01, n_steps=2000, generator=g)
    torch.testing.assert_close(x.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(x.std(0), std, atol=0.06, rtol=0)


def test_langevin_trajectory_shape():
    x = langevin_dynamics(lambda x: -x, torch.zeros(5, 2), 0.1, 7, return_trajectory=True)
    assert x.shape == (8, 5, 2)


def test_mixture_score_is_the_gradient_of_log_prob():
    gm = six_mode_mixture()
    x = (torch.randn(50, 2) * 3).requires_grad_(True)
    (auto,) = torch.autograd.grad(gm.log_prob(x).sum(), x)
    torch.testing.assert_close(gm.score(x.detach()), auto, atol=1e-4, rtol=1e-4)


def test_mixture_sampling_matches_weights_and_noising_adds_variance():
    gm = song_ermon_mixture()
    x = gm.sample(50_000, torch.Generator().manual_seed(0))
    assert gm.mode_weight_error(x) < 0.01
    noisy = gm.noised(2.0)
    assert noisy.covs[0, 0, 0].item() == pytest.approx(5.0)
    torch.testing.assert_close(noisy.means, gm.means)


def test_plain_langevin_gets_mode_weights_wrong_and_annealed_gets_them_right():
    gm = song_ermon_mixture()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4000, 2, generator=g) * 16 - 8
    plain = langevin_dynamics(gm.score, x0, 0.1, 500, generator=g)
    annealed = annealed_langevin_dynamics(lambda x, s: gm.noised(s).score(x), x0,
                                          geometric_sigmas(10.0, 0.1, 10), 1e-3, 100, generator=g)
    assert gm.mode_weight_error(plain) > 0.2
    assert gm.mode_weight_error(annealed) < 0.05


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decreasing"):
        annealed_langevin_dynamics(lambda x, s: -x, torch.zeros(2, 2), torch.tensor([0.1, 1.0]), 0.1, 1)
    with pytest.raises(ValueError, match="sigma_min"):
        geometric_sigmas(0.1, 1.0, 5)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([[0.0, 0.0]], [1.0], [-1.0])
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixture([[0.0, 0.0]], torch.ones(2, 2), [1.0])
