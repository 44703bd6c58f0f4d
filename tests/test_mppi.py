"""Tests of the MPPI baseline: the batched physics equals the scalar one, MPPI reaches a near goal, errors."""

import numpy as np
import pytest

import tutorial_lib.envs  # noqa: F401  (registers the ids)
from tutorial_lib.envs.maze import ACCEL_PER_ACTION, BALL_RADIUS, DT, MAX_SPEED, VELOCITY_DECAY, point_mass_step
from tutorial_lib.envs.maze_expert import evaluate_policy
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.agents.mppi import MPPIPlanner, _pad, batched_point_mass_step, rollout_positions


# ---------------------------------------------------------------------------- batched physics
@pytest.mark.parametrize("layout", ["umaze", "medium", "large"])
def test_batched_step_equals_scalar_step_through_wall_contacts(layout):
    grid = MazeGrid.from_layout(layout)
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    rng = np.random.default_rng(0)
    n_balls, n_steps = 8, 300
    pos = grid.free_cells[rng.integers(len(grid.free_cells), size=n_balls)] + rng.uniform(-0.1, 0.1, (n_balls, 2))
    vel = np.zeros((n_balls, 2))
    scalar = [(tuple(p), (0.0, 0.0)) for p in pos]
    push = np.full(n_balls, 1.0)  # a persistent push per ball, so that balls reach and press on walls
    contacts = 0
    for t in range(n_steps):
        if t % 50 == 0:
            push = rng.choice([-1.0, 1.0], size=(n_balls, 2))
        action = np.clip(push + rng.normal(0.0, 0.5, (n_balls, 2)), -1.0, 1.0)
        free_vel = VELOCITY_DECAY * np.clip(vel, -MAX_SPEED, MAX_SPEED) + DT * ACCEL_PER_ACTION * action
        free_pos = pos + DT * free_vel  # where the ball would go without walls
        pos, vel = batched_point_mass_step(grid.walls, pos, vel, action)
        contacts += int(np.any(np.abs(pos - free_pos) > 1e-12, axis=1).sum())
        scalar = [point_mass_step(walls, p, v, tuple(a)) for (p, v), a in zip(scalar, action)]
        np.testing.assert_allclose(pos, [p for p, _ in scalar], rtol=0, atol=1e-9)
        np.testing.assert_allclose(vel, [v for _, v in scalar], rtol=0, atol=1e-9)
        assert grid.is_free(pos, BALL_RADIUS).all()  # the push-out leaves no overlap
    assert contacts > 200, f"only {contacts} wall contacts; the rollout should press balls against walls"


def test_batched_step_stops_a_ball_on_a_wall_face():
    grid = MazeGrid.from_layout("umaze")
    pos, vel = np.array([[1.0, 1.0]]), np.zeros((1, 2))
    for _ in range(100):  # push towards the wall cell (0, 1), i.e. along -x
        pos, vel = batched_point_mass_step(grid.walls, pos, vel, np.array([[-1.0, 0.0]]))
    assert pos[0, 0] == pytest.approx(0.5 + BALL_RADIUS, abs=1e-8)
    assert pos[0, 1] == pytest.approx(1.0)
    assert vel[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_batched_step_rejects_bad_shapes():
    walls = MazeGrid.from_layout("umaze").walls
    with pytest.raises(ValueError, match="pos must have shape"):
        batched_point_mass_step(walls, np.zeros(2), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="share one shape"):
        batched_point_mass_step(walls, np.ones((2, 2)), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="action must be finite"):
        batched_point_mass_step(walls, np.ones((1, 2)), np.zeros((1, 2)), np.full((1, 2), np.nan))


# ---------------------------------------------------------------------------- MPPI
def test_mppi_reaches_a_near_goal_and_stays():
    # (1, 1) -> (1, 2) and (3, 3) -> (2, 3): neighbouring free cells of U-Maze, 1.0 apart.
    pairs = np.array([[[1.0, 1.0], [1.0, 2.0]], [[3.0, 3.0], [2.0, 3.0]]])
    result = evaluate_policy("tutorial_lib/PointMaze-UMaze-v0",
                             MPPIPlanner("umaze", samples=64, horizon=64, seed=0), pairs)
    assert result.success.all()
    assert (result.steps_to_goal < 100).all()
    assert (result.returns > 200).all()  # it stays in the goal region once there


def test_rollout_rewards_sparse_and_dense():
    # From rest with zero force the ball stays at (1, 1), 2.0 from the goal: sparse 0, dense -2 per step.
    planner = MPPIPlanner("umaze", samples=16, horizon=16, seed=0)
    obs, goal = np.array([1.0, 1.0, 0.0, 0.0], np.float32), np.array([3.0, 1.0])
    controls = np.zeros((3, 16, 2))
    assert planner.rollout_rewards(obs, goal, controls).tolist() == [0.0, 0.0, 0.0]
    dense = MPPIPlanner("umaze", samples=16, horizon=16, reward="dense", seed=0)
    assert (dense.rollout_rewards(obs, goal, controls) == pytest.approx(-16 * 2.0))


def test_mppi_is_deterministic_by_seed_and_reset():
    obs, goal = np.array([1.0, 1.0, 0.0, 0.0], np.float32), np.array([1.0, 2.0])

    def actions(planner, n=5):
        out = []
        for _ in range(n):
            a = planner(obs, goal)
            assert a.shape == (2,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
            out.append(a)
        return np.array(out)

    first = actions(MPPIPlanner("umaze", samples=32, horizon=16, seed=3))
    np.testing.assert_array_equal(first, actions(MPPIPlanner("umaze", samples=32, horizon=16, seed=3)))
    assert not np.array_equal(first, actions(MPPIPlanner("umaze", samples=32, horizon=16, seed=4)))
    planner = MPPIPlanner("umaze", samples=32, horizon=16, seed=0)
    actions(planner)
    planner.reset(seed=3)
    assert np.all(planner.nominal == 0.0)
    np.testing.assert_array_equal(first, actions(planner))


@pytest.mark.parametrize("kwargs, message", [
    ({"layout": "tiny"}, "unknown maze layout"),
    ({"horizon": 0}, "horizon must be"),
    ({"samples": 0}, "samples must be"),
    ({"sigma": 0.0}, "sigma must be"),
    ({"temperature": -1.0}, "temperature"),
    ({"reward": "shaped"}, "reward must be one of"),
])
def test_mppi_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPPIPlanner(**kwargs)


def test_mppi_rejects_bad_observations():
    planner = MPPIPlanner("umaze", samples=4, horizon=4, seed=0)
    with pytest.raises(ValueError, match="obs must be"):
        planner(np.zeros(2), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="goal must be"):
        planner(np.array([1.0, 1.0, 0.0, 0.0]), np.array([np.nan, 2.0]))


@pytest.mark.parametrize("reward, temperature", [("sparse", 1.0), ("dense", 0.05)])
def test_mppi_step_is_the_weighted_average_then_shifted(reward, temperature):
    """One call, recomputed by hand from the same noise: V_k = clip(U + eps_k), w ∝ exp((R - max R) / lambda),
    U <- sum_k w_k V_k; the action is U_0, and the plan kept for the next call is (U_1, ..., U_{T-1}, 0)."""
    obs, goal = np.array([1.0, 1.0, 0.2, 0.6]), np.array([1.1, 1.55])   # the goal disc within reach of some rollouts
    planner = MPPIPlanner("umaze", samples=64, horizon=12, sigma=0.7, temperature=temperature, reward=reward, seed=5)
    planner.nominal = np.random.default_rng(1).uniform(-0.5, 0.5, (12, 2))  # a warm start that is not zero
    nominal = planner.nominal.copy()
    eps = np.random.default_rng(5).normal(0.0, 0.7, size=(64, 12, 2))
    controls = np.clip(nominal[None] + eps, -1.0, 1.0)
    returns = planner.rollout_rewards(obs, goal, controls)
    assert returns.max() > returns.min()                                    # the weights are not all equal
    w = np.exp((returns - returns.max()) / temperature)
    w /= w.sum()
    plan = (w[:, None, None] * controls).sum(0)
    action = planner(obs, goal)
    np.testing.assert_allclose(action, plan[0].astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_allclose(planner.nominal[:-1], plan[1:], rtol=0, atol=1e-12)
    assert np.all(planner.nominal[-1] == 0.0)


def test_rollout_rewards_follow_the_true_dynamics():
    """The reward of a sequence is that of the states ``point_mass_step`` visits: 1 per step in the goal disc."""
    grid = MazeGrid.from_layout("umaze")
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    planner = MPPIPlanner("umaze", samples=2, horizon=40, seed=0)
    state, goal = np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.7])
    controls = np.zeros((2, 40, 2))
    controls[0, :, 1] = 1.0                      # push towards the goal: it enters the disc after some steps
    controls[1, :, 1] = -1.0                     # push into the wall behind: never there
    pos, vel, expected = (1.0, 1.0), (0.0, 0.0), 0
    for a in controls[0]:
        pos, vel = point_mass_step(walls, pos, vel, tuple(a))
        expected += np.hypot(pos[0] - goal[0], pos[1] - goal[1]) <= 0.5
    assert 0 < expected < 40
    assert planner.rollout_rewards(state, goal, controls).tolist() == [expected, 0.0]


def test_rollout_positions_clip_the_controls_hold_each_for_hold_steps_and_follow_the_true_dynamics():
    """Positions ``(K, T * hold, 2)`` of ``point_mass_step`` with each control clipped to [-1, 1] and held
    ``hold`` steps (1 by default), in float64 whatever the input dtype; a start with a velocity keeps it."""
    grid = MazeGrid.from_layout("umaze")
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    state = np.array([1.0, 1.0, 0.3, -0.2])
    controls = np.array([[[3.0, -0.5], [0.2, -4.0], [-1.7, 2.0]],      # out of range: clipped
                         [[0.5, 0.5], [-0.25, 1.0], [1.0, -1.0]]])
    for hold, dtype in ((1, np.float64), (3, np.float64), (1, np.float32)):   # float32 in: float64 arithmetic
        s, u = state.astype(dtype), controls.astype(dtype)
        got = rollout_positions(_pad(grid.walls), s, u) if hold == 1 else \
            rollout_positions(_pad(grid.walls), s, u, hold=hold)
        assert got.shape == (2, 3 * hold, 2) and got.dtype == np.float64
        for k in range(2):
            pos, vel, expected = tuple(map(float, s[:2])), tuple(map(float, s[2:])), []
            for a in np.repeat(np.clip(u[k].astype(np.float64), -1.0, 1.0), hold, axis=0):
                pos, vel = point_mass_step(walls, pos, vel, tuple(a))
                expected.append(pos)
            np.testing.assert_allclose(got[k], expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- edges (from mutation testing)
def test_batched_step_treats_the_outside_of_the_grid_as_wall():
    """A grid without a wall border (all free): the padding stops a ball at each of its four edges."""
    walls = np.zeros((3, 3), dtype=bool)
    for start, push, axis, stop in [((0.0, 1.0), (-1.0, 0.0), 0, -0.5 + BALL_RADIUS),
                                    ((2.0, 1.0), (1.0, 0.0), 0, 2.5 - BALL_RADIUS),
                                    ((1.0, 0.0), (0.0, -1.0), 1, -0.5 + BALL_RADIUS),
                                    ((1.0, 2.0), (0.0, 1.0), 1, 2.5 - BALL_RADIUS)]:
        pos, vel = np.array([start]), np.zeros((1, 2))
        for _ in range(100):
            pos, vel = batched_point_mass_step(walls, pos, vel, np.array([push]))
        assert pos[0, axis] == pytest.approx(stop, abs=1e-8), (start, push)
        assert vel[0, axis] == pytest.approx(0.0, abs=1e-12)


def test_batched_step_leaves_a_centre_inside_a_wall_alone_like_the_scalar_step():
    """A disc whose centre lies inside a wall square (d = 0, no contact normal) is not pushed, as in ``point_mass_step``."""
    grid = MazeGrid.from_layout("umaze")
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    assert grid.walls[0, 1]
    pos, vel = batched_point_mass_step(grid.walls, np.array([[0.45, 1.0]]), np.zeros((1, 2)), np.zeros((1, 2)))
    p, v = point_mass_step(walls, (0.45, 1.0), (0.0, 0.0), (0.0, 0.0))
    assert np.all(np.isfinite(pos))
    np.testing.assert_allclose(pos[0], p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(vel[0], v, rtol=0, atol=1e-12)


def test_batched_step_computes_in_float64_whatever_the_input_dtype():
    grid = MazeGrid.from_layout("umaze")
    rng = np.random.default_rng(0)
    pos, vel, action = np.array([[1.0, 1.1], [2.9, 3.05]]), rng.normal(0, 3, (2, 2)), rng.uniform(-1, 1, (2, 2))
    want = batched_point_mass_step(grid.walls, pos.astype(np.float32).astype(np.float64),
                                   vel.astype(np.float32).astype(np.float64), action.astype(np.float32).astype(np.float64))
    got = batched_point_mass_step(grid.walls, pos.astype(np.float32), vel.astype(np.float32), action.astype(np.float32))
    for w, g in zip(want, got):
        assert g.dtype == np.float64
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match=r"walls must be a \(n_rows, n_cols\) bool grid, got shape \(3,\)"):
        batched_point_mass_step(np.zeros(3, dtype=bool), pos, vel, action)


def test_mppi_defaults_and_smallest_sizes():
    planner = MPPIPlanner()
    assert (planner.layout, planner.samples, planner.horizon) == ("umaze", 256, 64)
    assert (planner.sigma, planner.temperature, planner.reward) == (0.5, 1.0, "sparse")
    tiny = MPPIPlanner(samples=1, horizon=1, seed=0)               # K = 1 and T = 1 are allowed
    assert tiny(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 2.0])).shape == (2,)
    with pytest.raises(ValueError, match="temperature"):
        MPPIPlanner(temperature=0.0)


def test_sparse_reward_counts_the_goal_disc_boundary_and_dense_weights_do_not_underflow():
    """r_t = 1 when ||p_t - goal|| <= 0.5, boundary included; and a dense reward with a small temperature, far from
    the goal (returns of about -200, (R - max R) / lambda kept near 0), still gives a finite action."""
    planner = MPPIPlanner("umaze", samples=2, horizon=8, seed=0)
    at_rest = np.array([1.0, 1.0, 0.0, 0.0])
    assert planner.rollout_rewards(at_rest, np.array([1.5, 1.0]), np.zeros((2, 8, 2))).tolist() == [8.0, 8.0]
    dense = MPPIPlanner("umaze", samples=16, horizon=64, reward="dense", temperature=0.01, seed=0)
    action = dense(at_rest, np.array([3.0, 3.0]))
    assert np.all(np.isfinite(action)) and np.all(np.isfinite(dense.nominal))


def test_rollout_rewards_keep_the_state_in_float64():
    """A float32 state gives the rewards of the same values in float64 (the velocity is not decayed in float32)."""
    planner = MPPIPlanner("umaze", samples=3, horizon=20, reward="dense", seed=0)
    state = np.array([1.0, 1.1, 0.3, -0.7], np.float32)
    controls = np.random.default_rng(0).uniform(-1, 1, (3, 20, 2))
    goal = np.array([2.0, 3.0])
    np.testing.assert_array_equal(planner.rollout_rewards(state, goal, controls),
                                  planner.rollout_rewards(state.astype(np.float64), goal, controls))
