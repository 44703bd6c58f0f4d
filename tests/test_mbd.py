"""Model-based diffusion (agents/mbd.py) and its U-maze experiment (experiments/literature_model_based.py)."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.mbd import cem_optimize, mbd_optimize, mbd_schedule, mppi_optimize, softmax_weights
from tutorial_lib.experiments.literature_model_based import MazeTask, make_problems


def quadratic(target):
    """``J(Y) = sum (Y - target)^2``, ``(K, T, D) -> (K,)``: one minimum, at ``target``."""
    return lambda y: ((y - target) ** 2).sum(dim=(1, 2))


def test_schedule_noise_falls_towards_the_data():
    alphas, abar, sigmas = mbd_schedule(10, 1e-3, 0.2)
    assert alphas.shape == abar.shape == sigmas.shape == (10,)
    assert torch.all(sigmas[1:] > sigmas[:-1])  # sigma_i grows with i, so the reverse loop anneals it down
    torch.testing.assert_close(sigmas, torch.sqrt(1 / abar - 1))
    torch.testing.assert_close(abar[-1], torch.prod(1 - torch.linspace(1e-3, 0.2, 10, dtype=torch.float64)))


def test_softmax_weights_sum_to_one_and_favour_low_cost():
    costs = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    w = softmax_weights(costs, 0.5)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert int(w.argmax()) == 1 and w[1] > w[2] > w[0]
    # standardized costs: invariant to shifting and scaling J
    torch.testing.assert_close(softmax_weights(10 * costs + 7, 0.5), w)
    # raw costs: exp(-J / lambda) exactly
    raw = softmax_weights(costs, 0.5, normalize=False)
    torch.testing.assert_close(raw, torch.exp(-costs / 0.5) / torch.exp(-costs / 0.5).sum())


def test_one_diffusion_step_is_one_mppi_update():
    target = torch.full((5, 2), 0.3, dtype=torch.float64)
    init = torch.linspace(-0.5, 0.5, 10, dtype=torch.float64).reshape(5, 2)
    beta = 0.2
    sigma = float(mbd_schedule(1, beta, beta)[2][0])
    mbd = mbd_optimize(quadratic(target), 5, 2, n_diffusion_steps=1, n_samples=64, beta_start=beta, beta_end=beta,
                       init=init, generator=torch.Generator().manual_seed(3))
    mppi = mppi_optimize(quadratic(target), 5, 2, n_iterations=1, n_samples=64, sigma=sigma, init=init,
                         generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mbd.controls, mppi.controls)
    assert mbd.rollouts == mppi.rollouts == 64


def test_optimizers_find_a_quadratic_minimum_inside_the_box():
    target = torch.tensor([[0.5, -0.25]] * 4, dtype=torch.float64)
    runs = {  # MPPI keeps its noise constant, so its weighted mean stays noisier (the point of annealing)
        "mbd": (0.1, lambda g: mbd_optimize(quadratic(target), 4, 2, n_diffusion_steps=30, n_samples=128, generator=g)),
        "mppi": (0.25, lambda g: mppi_optimize(quadratic(target), 4, 2, n_iterations=30, n_samples=128, sigma=0.3,
                                               generator=g)),
        "cem": (0.1, lambda g: cem_optimize(quadratic(target), 4, 2, n_iterations=30, n_samples=128, generator=g)),
    }
    for name, (tol, run) in runs.items():
        result = run(torch.Generator().manual_seed(0))
        assert result.controls.shape == (4, 2) and result.cost_history.shape == (30,)
        assert float((result.controls - target).abs().max()) < tol, name
        assert result.cost < 0.1 < float(quadratic(target)(torch.zeros(1, 4, 2))[0]), name


def test_samples_stay_in_the_box_and_are_recorded():
    result = mbd_optimize(quadratic(torch.full((3, 1), 5.0)), 3, 1, n_diffusion_steps=5, n_samples=16,
                          generator=torch.Generator().manual_seed(0), record_samples=4)
    assert len(result.samples) == 5 and result.samples[0].shape == (4, 3, 1)
    assert all(float(s.abs().max()) <= 1.0 for s in result.samples)
    torch.testing.assert_close(result.controls, torch.ones(3, 1, dtype=torch.float64), atol=0.05, rtol=0)


def test_bad_input_raises():
    cost = quadratic(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="temperature"):
        mbd_optimize(cost, 3, 2, temperature=0.0)
    with pytest.raises(ValueError, match="init must have shape"):
        mbd_optimize(cost, 3, 2, init=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="cost_fn must map"):
        mppi_optimize(lambda y: y.sum(dim=2), 3, 2, n_iterations=1)
    with pytest.raises(ValueError, match="n_samples"):
        cem_optimize(cost, 3, 2, n_samples=1)
    with pytest.raises(ValueError, match="start"):
        MazeTask(start=(2.0, 1.0), goal=(1.0, 1.0))  # (2, 1) is a wall cell of the U-maze


def test_maze_rollout_matches_the_environment_and_the_cost():
    task = MazeTask(start=(3.0, 1.0), goal=(1.0, 1.0), horizon=6, hold=10)
    controls = torch.tensor([[0.0, 1.0]] * 3 + [[-1.0, 0.0]] * 3, dtype=torch.float64)
    path = task.rollout(controls[None])
    assert path.shape == (1, 60, 2)
    final, success = task.execute(controls)
    np.testing.assert_allclose(final, path[0, -1], atol=1e-12)
    assert not success
    distance = np.linalg.norm(path[0] - np.array([1.0, 1.0]), axis=1)
    expected = distance.mean() + task.terminal_weight * distance[-1] + task.control_weight * 1.0
    np.testing.assert_allclose(float(task.cost(controls[None])[0]), expected, rtol=1e-12)


def test_problems_put_start_and_goal_on_opposite_sides_of_the_wall():
    problems = make_problems(8, seed=5)
    assert len(problems) == 8
    for task in problems:
        assert abs(round(task.start[0]) - round(task.goal[0])) == 2  # rows 1 and 3, the wall is row 2
    assert make_problems(8, seed=5) == problems


def test_mbd_lowers_the_maze_cost_below_standing_still():
    task = make_problems(1, seed=7)[0]
    result = mbd_optimize(task.cost, task.horizon, 2, n_diffusion_steps=6, n_samples=64,
                          generator=torch.Generator().manual_seed(0))
    assert result.cost < float(task.cost(torch.zeros(1, task.horizon, 2))[0])
