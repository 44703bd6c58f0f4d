"""Obstacle costs, projections and checks of the Limitations chapter on constraints."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.constrained_sampling import (BALL_RADIUS, ConstrainedPlanner, collision_cost,
                                                      collision_cost_grad, constrained_ddim_sample,
                                                      obstacle_clearance, project_out, project_walls,
                                                      wall_cost_grad, wall_penetration)
from tutorial_lib.agents.diffuser import sample_plans
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.experiments.limitations_constraints import (border_walls, make_constrained_planner,
                                                              place_obstacles, plan_crosses_walls, route_exists,
                                                              touches_obstacles)

CENTRES, RADII = np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([0.5, 0.3])


def test_clearance_known_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 0.2], [2.0, 1.0]])
    np.testing.assert_allclose(obstacle_clearance(p, CENTRES, RADII).numpy(), [0.5, -0.3, 0.7], atol=1e-6)
    assert torch.isinf(obstacle_clearance(p, np.zeros((0, 2)), np.zeros(0))).all()


def test_cost_gradient_matches_autograd_and_points_outward():
    p = torch.tensor([[[0.3, 0.1], [1.8, 0.05], [5.0, 5.0]]], requires_grad=True)   # (1, 3, 2)
    cost = collision_cost(p, CENTRES, RADII, margin=0.05)
    grad, = torch.autograd.grad(cost.sum(), p)
    analytic = collision_cost_grad(p.detach(), CENTRES, RADII, margin=0.05)
    torch.testing.assert_close(analytic, grad, atol=1e-5, rtol=1e-5)
    assert cost.item() < 0 and torch.all(analytic[0, 2] == 0)           # a clear point costs nothing
    assert analytic[0, 0, 0] > 0 and analytic[0, 1, 0] < 0              # pushed away from each centre


def test_projection_clears_every_point_and_keeps_clear_ones():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 50, 2, generator=g) * 4 - 1
    q = project_out(p, CENTRES, RADII, margin=0.1)
    assert (obstacle_clearance(q, CENTRES, RADII) >= BALL_RADIUS + 0.1 - 1e-5).all()
    clear = obstacle_clearance(p, CENTRES, RADII) >= BALL_RADIUS + 0.1
    torch.testing.assert_close(q[clear], p[clear])


def test_wall_push_and_gradient():
    grid = MazeGrid.from_layout("umaze")
    walls = border_walls(grid)
    assert grid.walls[tuple(walls.astype(int).T)].all()
    p = torch.tensor([[[1.0, 2.0], [1.0, 3.42], [2.0, 2.0]]])   # free centre; near wall (1, 4); inside wall (2, 2)
    depth, _ = wall_penetration(p, walls)
    assert depth[0, 0].max() == 0 and depth[0, 1].max() > 0 and depth[0, 2].max() > BALL_RADIUS
    assert wall_cost_grad(p, walls)[0, 1, 1] < 0                       # pushed away from the wall at y = 2.5
    q = project_walls(p[:, :2], walls)
    assert grid.is_free(q[0].numpy(), BALL_RADIUS - 1e-4).all()


def test_plan_crosses_walls():
    grid = MazeGrid.from_layout("umaze")
    assert not plan_crosses_walls(grid, [[1.0, 1.0], [1.0, 2.0], [1.0, 3.0], [2.0, 3.0]])
    assert plan_crosses_walls(grid, [[1.0, 1.0], [3.0, 1.0]])          # a straight jump through wall row 2
    assert plan_crosses_walls(grid, [[1.0, 1.0], [1.0, 1.35]]) is False
    assert plan_crosses_walls(grid, [[1.0, 1.0], [1.45, 1.0]])         # the ball overlaps wall (2, 1)
    with pytest.raises(ValueError, match="shape"):
        plan_crosses_walls(grid, [1.0, 1.0])


def test_route_and_placement():
    grid = MazeGrid.from_layout("medium")
    start, goal = np.array([1.0, 1.0]), np.array([6.0, 6.0])
    assert route_exists(grid, start, goal, np.zeros((0, 2)), np.zeros(0))
    assert not route_exists(grid, start, goal, np.array([[3.0, 2.0]]), np.array([0.45]))   # corridor cut
    c1, r1 = place_obstacles(grid, start, goal, 3, np.random.default_rng(0))
    c2, _ = place_obstacles(grid, start, goal, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(c1, c2)
    assert route_exists(grid, start, goal, c1, r1)
    path = grid.shortest_path(grid.xy_to_cell(start), grid.xy_to_cell(goal))
    assert np.all(np.linalg.norm(c1[:, None] - path[None], axis=-1).min(1) <= 0.2 + 1e-9)
    assert touches_obstacles(path, c1, r1)                              # the grid route hits them
    with pytest.raises(ValueError, match="interior cells"):
        place_obstacles(grid, start, np.array([1.0, 2.0]), 2, np.random.default_rng(0))


def test_sampler_without_hooks_is_the_library_sampler():
    planner = make_constrained_planner("umaze", "plain", device="cpu")
    conditions, _, B = planner._conditions(*planner._request([1.0, 1.0, 0, 0], [3.0, 1.0]), planner.horizon)
    shape = (B, planner.horizon, 6)
    a = sample_plans(planner.model, planner.diffusion, conditions, shape, ddim_steps=4,
                     generator=torch.Generator().manual_seed(3))
    b = constrained_ddim_sample(planner.model, planner.diffusion, conditions, shape, 4, planner.normalizer,
                                generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    c = constrained_ddim_sample(planner.model, planner.diffusion, conditions, shape, 4, planner.normalizer,
                                np.array([[2.0, 3.0]]), np.array([0.3]), project=True, margin=0.05,
                                generator=torch.Generator().manual_seed(3))
    pos = planner.normalizer.unnormalize(c)[..., 2:4]
    assert (obstacle_clearance(pos, [[2.0, 3.0]], [0.3]) >= BALL_RADIUS + 0.05 - 1e-4).all()


def test_bad_input():
    with pytest.raises(ValueError, match="one radius per"):
        obstacle_clearance(torch.zeros(3, 2), CENTRES, [0.5])
    with pytest.raises(ValueError, match="> 0"):
        collision_cost(torch.zeros(1, 3, 2), CENTRES, [0.5, -1.0])
    with pytest.raises(ValueError, match="method"):
        make_constrained_planner("umaze", "magic")
    with pytest.raises(ValueError, match="guide_scale"):
        constrained_ddim_sample(None, None, {}, (1, 4, 6), 2, None, guide_scale=-1.0)
    assert issubclass(ConstrainedPlanner, object)


def test_filtered_evaluation_wraps_the_planner_and_reports_the_share_of_changed_actions():
    from tutorial_lib.experiments import limitations_constraints as lc

    pairs, obstacles = lc.obstacle_suite(1, 1, seed=lc.TUNE_SEED)
    out = lc.evaluate_constrained("guidance", pairs, obstacles, filtered=True)
    assert out["n_episodes"] == 1 and 0 < out["filtered_share"] < 1
    assert "filtered_share" not in lc.evaluate_constrained("plain", pairs, obstacles)
