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


# ----------------------------------------------------------------------------- edges (from mutation testing)
def test_langevin_argument_checks_and_zero_steps():
    x0 = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"need step_size > 0 and n_steps >= 0, got 0.0, 3"):
        langevin_dynamics(lambda x: -x, x0, 0.0, 3)                  # a zero step, the step count fine
    with pytest.raises(ValueError, match=r"got 0.1, -1"):
        langevin_dynamics(lambda x: -x, x0, 0.1, -1)
    out = langevin_dynamics(lambda x: -x, x0, 0.1, 0)                 # zero steps: the start itself
    torch.testing.assert_close(out, x0, rtol=0, atol=0)


def test_one_langevin_step_by_hand_seeded_and_on_the_data_device():
    """x + c s(x) + sqrt(2c) eps with eps from the generator alone (the global RNG is not used); the noise is
    drawn on x's device ("meta" stands in for a GPU)."""
    x0, c = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), 0.04
    score = lambda x: -(x - 1.0)  # noqa: E731
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outs.append(langevin_dynamics(score, x0, c, 1, generator=torch.Generator().manual_seed(5)))
    eps = torch.randn((2, 2), generator=torch.Generator().manual_seed(5))
    for out in outs:
        torch.testing.assert_close(out, x0 + c * score(x0) + (2 * c) ** 0.5 * eps, rtol=0, atol=1e-7)
    assert langevin_dynamics(lambda x: -x, x0.to("meta"), c, 2).device.type == "meta"


def test_geometric_sigmas_bounds_and_two_scales():
    torch.testing.assert_close(geometric_sigmas(4.0, 0.5, 2), torch.tensor([4.0, 0.5]))
    torch.testing.assert_close(geometric_sigmas(8.0, 1.0, 4), torch.tensor([8.0, 4.0, 2.0, 1.0]))
    for bad in ((1.0, 0.0, 5), (1.0, 1.0, 5), (1.0, 0.1, 1)):
        with pytest.raises(ValueError, match=r"need 0 < sigma_min < sigma_max and n >= 2"):
            geometric_sigmas(*bad)


def test_annealed_steps_by_hand_with_the_step_scaled_by_sigma_squared():
    """At scale sigma_i the step is c_i = c sigma_i^2 / sigma_L^2, noise from the generator alone; the trajectory
    holds the start and every iterate; a float64 tensor of scales runs the same chain as a list."""
    x0, c, sigmas = torch.tensor([[0.5, -1.0]]), 0.01, [2.0, 1.5, 0.5]
    score = lambda x, s: -x / (1.0 + s ** 2)  # noqa: E731
    torch.manual_seed(3)
    traj = annealed_langevin_dynamics(score, x0, sigmas, c, 2, generator=torch.Generator().manual_seed(7),
                                      return_trajectory=True)
    g, x, want = torch.Generator().manual_seed(7), x0.clone(), [x0.clone()]
    for s in sigmas:
        ci = c * s ** 2 / sigmas[-1] ** 2
        for _ in range(2):
            x = x + ci * score(x, s) + (2 * ci) ** 0.5 * torch.randn((1, 2), generator=g)
            want.append(x.clone())
    assert traj.shape == (7, 1, 2)
    torch.testing.assert_close(traj, torch.stack(want), rtol=0, atol=1e-6)
    torch.manual_seed(4)
    last = annealed_langevin_dynamics(score, x0, torch.tensor([2.0, 1.5, 0.3], dtype=torch.float64), c, 2,
                                      generator=torch.Generator().manual_seed(7))
    same = annealed_langevin_dynamics(score, x0, [2.0, 1.5, 0.3], c, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(last, same, rtol=0, atol=0)
    assert annealed_langevin_dynamics(score, x0.to("meta"), sigmas, c, 1).device.type == "meta"


def test_annealed_scales_may_repeat_but_never_increase():
    x0 = torch.zeros(2, 2)
    annealed_langevin_dynamics(lambda x, s: -x, x0, [1.0, 1.0, 0.5], 0.01, 1)   # non-increasing is fine
    for bad in ([1.0, 0.2, 0.5], [[1.0, 0.5]]):
        with pytest.raises(ValueError, match=r"^sigmas must be a 1-D sequence of decreasing noise scales$"):
            annealed_langevin_dynamics(lambda x, s: -x, x0, bad, 0.01, 1)
