"""The hybrid prior's parts: the trajectory optimiser, its checks, the scaling, the planners' shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tutorial_lib.agents.trajectory_optimizer import (PlanSpec, check_plans, grid_initial_path, optimize_plans,
                                                      signed_distance, trajectory_cost, wall_centres)
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.experiments.literature_hybrid import (HybridPriorConfig, build_prior_net, from_unit,
                                                        plan_diffusion, prior_loss, sample_problems, to_unit)

GRID = MazeGrid.from_layout("medium")
WALLS = wall_centres(GRID)


def test_signed_distance_known_values():
    # cell (1, 1) is free, (0, 1) is a wall: its square ends at x = 0.5
    pts = torch.tensor([[1.0, 1.0], [0.7, 1.0], [0.0, 0.0]])
    d = signed_distance(pts, WALLS)
    assert d[0] == pytest.approx(0.5, abs=1e-5)
    assert d[1] == pytest.approx(0.2, abs=1e-5)
    assert d[2] == pytest.approx(-0.5, abs=1e-5)  # the centre of a wall cell


def test_grid_path_ends_and_length():
    s, g = np.array([1.1, 1.2]), np.array([6.1, 6.0])
    X = grid_initial_path(GRID, s, g, 64)
    assert X.shape == (64, 2)
    np.testing.assert_allclose(X[0], s)
    np.testing.assert_allclose(X[-1], g)
    steps = np.linalg.norm(np.diff(X, axis=0), axis=1)
    # equal arc lengths: chords are that long on straight runs, shorter where they cut a corner
    arc = steps.max()
    assert np.isclose(steps, arc, rtol=1e-6).mean() > 0.8 and steps.min() > arc / np.sqrt(2) - 1e-9
    assert GRID.is_free(X, 0.1).all()


def test_optimizer_makes_valid_plans_and_lowers_cost():
    starts, goals = sample_problems(GRID, 12, seed=7)
    X0 = torch.tensor(np.stack([grid_initial_path(GRID, s, g, 64) for s, g in zip(starts, goals)]),
                      dtype=torch.float32)
    X, steps = optimize_plans(X0, WALLS, 5)
    assert steps == 5
    assert torch.equal(X[:, 0], X0[:, 0]) and torch.equal(X[:, -1], X0[:, -1])  # pinned ends never move
    assert (trajectory_cost(X, WALLS) <= trajectory_cost(X0, WALLS)).all()  # LM only takes descending steps
    assert check_plans(X, GRID, starts, goals).all()


def test_check_plans_rejects_each_failure():
    s, g = np.array([1.0, 1.0]), np.array([1.0, 2.0])
    u = np.linspace(0, 1, 16)[:, None]
    good = (1 - u) * s + u * g
    assert check_plans(good[None], GRID, s, g)[0]
    wrong_goal = good.copy()
    wrong_goal[-1] += 0.1
    through_wall = (1 - u) * s + u * np.array([3.0, 1.0])  # (2, 1) is a wall
    jump = good.copy()
    jump[8] += np.array([0.0, 0.3])  # an acceleration far above the bound
    ok = check_plans(np.stack([wrong_goal, through_wall, jump]), GRID, s, [g, [3.0, 1.0], g])
    assert not ok.any()


def test_scaling_round_trip_and_range():
    X = torch.tensor(GRID.free_cells, dtype=torch.float32)
    Z = to_unit(X, GRID)
    assert Z.abs().max() < 1
    torch.testing.assert_close(from_unit(Z, GRID), X)


def test_prior_net_loss_and_sampler_shapes():
    cfg = HybridPriorConfig(horizon=16, n_diffusion_steps=8)
    torch.manual_seed(0)
    net = build_prior_net(cfg).eval()
    x0 = torch.rand(4, 16, 2) * 2 - 1
    loss = prior_loss(cfg, "cpu")(net, x0, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    from tutorial_lib.agents.diffuser import make_diffusion

    s, g = np.array([1.0, 1.0]), np.array([1.0, 2.0])
    plan, valid = plan_diffusion(net, make_diffusion(8), GRID, WALLS, s, g, 16, n_candidates=3, ddim_steps=2,
                                 generator=torch.Generator().manual_seed(0))
    assert plan.shape == (16, 2) and isinstance(valid, bool)
    torch.testing.assert_close(plan[0], torch.tensor(s, dtype=torch.float32))  # inpainted start, exactly
    torch.testing.assert_close(plan[-1], torch.tensor(g, dtype=torch.float32))


def test_bad_input():
    with pytest.raises(ValueError, match="X0 must be"):
        optimize_plans(torch.zeros(5, 2), WALLS, 1)
    with pytest.raises(ValueError, match="needs the grid"):
        optimize_plans(torch.zeros(1, 8, 2), WALLS, 1, stop_when_valid=True)
    with pytest.raises(ValueError, match="multiple of"):
        HybridPriorConfig(horizon=30)
    with pytest.raises(ValueError, match="problem"):
        sample_problems(GRID, 0, seed=0)
    with pytest.raises(ValueError, match="positions"):
        check_plans(np.zeros((3, 2)), GRID, [0, 0], [0, 0])
