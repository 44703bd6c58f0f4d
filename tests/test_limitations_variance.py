"""Tests of the variance experiments: the wall check, the noise planner, the sweep and its summaries."""

import numpy as np
import pytest
import torch

import tutorial_lib.envs  # noqa: F401  (registers the mazes)
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.experiments.limitations_variance import (NoisePlanner, classify, crosses_wall, failure_summary,
                                                            make_noise_planner, noise_sweep, reach_goal)
from tutorial_lib.experiments.maze_eval import make_planner

GRID = MazeGrid.from_layout("medium")


@pytest.fixture(scope="module")
def loaded():
    from tutorial_lib.agents.diffuser import load_diffuser

    return load_diffuser("maze-medium-diffuser", device="cpu")


def test_crosses_wall_free_segment_wall_jump_and_arrival():
    inside = np.array([[[1.0, 1.0], [1.2, 1.0], [2.0, 1.0]]])      # (1,1) -> (2,1): both free cells
    turn = np.array([[[1.0, 1.0], [1.0, 2.0], [2.0, 2.0]]])        # (1,1) -> (1,2) -> (2,2): free, 4-connected
    wall = np.array([[[1.0, 2.0], [1.0, 3.0], [1.0, 3.0]]])        # (1,2) -> (1,3), a wall cell
    corner = np.array([[[5.2, 4.0], [5.8, 4.7], [6.0, 5.0]]])      # (5,4) -> (6,5): free cells that touch at a corner
    assert not crosses_wall(GRID, inside, [2])[0]
    assert not crosses_wall(GRID, turn, [2])[0]
    assert crosses_wall(GRID, wall, [2])[0]
    assert crosses_wall(GRID, corner, [2])[0]                      # clips the wall cell (6,4)
    # a crossing after the arrival index does not count
    late = np.array([[[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]]])
    assert crosses_wall(GRID, late, [2])[0] and not crosses_wall(GRID, late, [1])[0]


def test_crosses_wall_bad_input():
    with pytest.raises(ValueError, match="shape"):
        crosses_wall(GRID, np.zeros((4, 2)), [1])
    with pytest.raises(ValueError, match="n_sub"):
        crosses_wall(GRID, np.zeros((1, 3, 2)), [1], n_sub=0)


def test_classify_and_failure_summary():
    s = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]], bool)
    c = classify(s)
    assert c["always"] == [0] and c["sometimes"] == [1, 3] and c["never"] == [2]
    assert (c["n_always"], c["n_sometimes"], c["n_never"]) == (1, 2, 1)
    np.testing.assert_allclose(c["rate"], [1, 2 / 3, 0, 1 / 3])
    f = failure_summary(s)
    assert f["n_episodes"] == 12 and f["failure_rate"] == round(6 / 12, 4)
    assert f["ci95"][0] < 0.5 < f["ci95"][1]
    with pytest.raises(ValueError, match="pairs, seeds"):
        classify(np.ones(3, bool))
    with pytest.raises(ValueError, match="at least one"):
        failure_summary(np.zeros((0, 2), bool))


def test_noise_planner_unit_temperature_is_the_shipped_planner(loaded):
    state, goal = np.array([2.93, 2.09, 0.0, 0.0]), np.array([6.08, 5.06])
    shipped = make_planner("medium", seed=3, device="cpu").plan(state, goal)
    ours = make_noise_planner("medium", seed=3, device="cpu", loaded=loaded).plan(state, goal)
    np.testing.assert_array_equal(shipped.observations, ours.observations)
    assert shipped.chosen == ours.chosen
    other = make_noise_planner("medium", seed=4, device="cpu", loaded=loaded).plan(state, goal)
    assert not np.allclose(other.observations, ours.observations)   # only the noise changed


def test_temperature_scales_initial_noise_and_wall_check_picks_a_clean_plan(loaded):
    cold = make_noise_planner("medium", seed=0, temperature=0.5, device="cpu", loaded=loaded)
    z = cold.initial_noise((64, 64, 6))
    assert abs(float(z.std()) - 0.5) < 0.01
    checked = make_noise_planner("medium", seed=0, wall_check=True, device="cpu", loaded=loaded)
    plan = checked.plan(np.array([4.03, 2.07, 0.0, 0.0]), np.array([1.08, 0.99]))
    clean = checked.feasible(plan.observations, plan.arrival) & ~crosses_wall(GRID, plan.observations, plan.arrival)
    if clean.any():
        assert plan.chosen == int(np.flatnonzero(clean)[0])


def test_bad_settings(loaded):
    with pytest.raises(ValueError, match="temperature"):
        make_noise_planner("medium", temperature=0.0, loaded=loaded)
    with pytest.raises(ValueError, match="best_of"):
        make_noise_planner("medium", best_of=0, loaded=loaded)
    model, diffusion, normalizer, cfg = loaded
    with pytest.raises(ValueError, match="grid"):
        NoisePlanner(model, diffusion, normalizer, horizon=cfg.horizon, arrival="earliest", wall_check=True)


def test_reach_goal_stops_at_arrival_and_sweep_repeats_by_seed(loaded):
    import gymnasium as gym

    env = gym.make("tutorial_lib/PointMaze-Medium-v0")
    still = reach_goal(env, lambda obs, goal: np.zeros(2, np.float32), [1.0, 1.0], [6.0, 6.0], max_steps=5)
    assert still == {"success": False, "steps": 5, "n_plans": 0}
    near = reach_goal(env, lambda obs, goal: np.zeros(2, np.float32), [1.0, 1.0], [1.0, 1.3])
    assert near["success"] and near["steps"] == 1                  # starts inside the goal disc
    planner = make_noise_planner("medium", device="cpu", loaded=loaded)
    pairs = np.array([[[4.03, 2.07], [4.02, 0.95]]])
    a = noise_sweep(planner, pairs, [0, 1, 0], max_steps=60)
    assert a["success"].shape == (1, 3) and a["steps"].shape == (1, 3)
    assert a["success"].all() and a["steps"][0, 0] == a["steps"][0, 2]   # the same seed repeats
    with pytest.raises(ValueError, match="pairs"):
        noise_sweep(planner, np.zeros((2, 2)), [0])
