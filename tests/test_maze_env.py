"""Tests of the maze2d point-mass environment: layouts, physics, walls, reward, episodes, errors."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import tutorial_lib.envs  # noqa: F401  (registers the ids)
from tutorial_lib.envs import maze
from tutorial_lib.envs.maze import PointMazeEnv
from tutorial_lib.envs.maze_grid import LAYOUTS, MazeGrid

IDS = {
    "umaze": "tutorial_lib/PointMaze-UMaze-v0",
    "medium": "tutorial_lib/PointMaze-Medium-v0",
    "large": "tutorial_lib/PointMaze-Large-v0",
}

# D4RL's U_MAZE, MEDIUM_MAZE and LARGE_MAZE, rows joined by a backslash as in d4rl/pointmaze/maze_model.py.
D4RL_STRINGS = {
    "umaze": "#####\\#GOO#\\###O#\\#OOO#\\#####",
    "medium": "########\\#OO##OO#\\#OO#OOO#\\##OOO###\\#OO#OOO#\\#O#OO#O#\\#OOO#OG#\\########",
    "large": "############\\#OOOO#OOOOO#\\#O##O#O#O#O#\\#OOOOOO#OOO#\\#O####O###O#\\"
             "#OO#O#OOOOO#\\##O#O#O#O###\\#OO#OOO#OGO#\\############",
}


def make(layout="umaze", start=(1.0, 1.0), goal=(3.0, 1.0), **kwargs):
    env = PointMazeEnv(layout, **kwargs)
    env.reset(seed=0, options={"start": start, "goal": goal})
    return env


# ---------------------------------------------------------------------------- layouts and grid
@pytest.mark.parametrize("layout", sorted(D4RL_STRINGS))
def test_layouts_equal_d4rl_strings(layout):
    assert LAYOUTS[layout].replace("\n", "\\") == D4RL_STRINGS[layout]


def test_grid_cells_and_coordinates():
    grid = MazeGrid.from_layout("umaze")
    assert grid.shape == (5, 5) and grid.goal_cell == (1, 1)
    assert grid.free_cells.tolist() == [[1, 1], [1, 2], [1, 3], [2, 3], [3, 1], [3, 2], [3, 3]]
    np.testing.assert_array_equal(grid.xy_to_cell([[1.49, 0.51], [2.6, 3.4]]), [[1, 1], [3, 3]])
    np.testing.assert_array_equal(grid.cell_to_xy(grid.free_cells), grid.free_cells.astype(float))
    assert MazeGrid.from_layout("large").goal_cell == (7, 9)
    assert MazeGrid.from_layout("medium").goal_cell == (6, 6)


def _is_free_brute_force(grid, points, radius):
    """Distance from each point to every wall square, written independently of the library."""
    walls = np.argwhere(grid.walls).astype(float)
    gap = np.maximum(np.abs(points[:, None, :] - walls[None]) - 0.5, 0.0)
    dist = np.linalg.norm(gap, axis=-1)
    inside_square = np.all(np.abs(points[:, None, :] - walls[None]) < 0.5, axis=-1)
    hit = (dist < radius).any(1) if radius > 0 else inside_square.any(1)
    (lo, hi) = grid.bounds
    inside = np.all((points >= lo) & (points <= hi), axis=1)
    return inside & ~hit


@pytest.mark.parametrize("radius", [0.0, 0.1, 0.3])
def test_is_free_matches_brute_force(radius):
    grid = MazeGrid.from_layout("large")
    points = np.random.default_rng(0).uniform(-1.0, 12.0, size=(5000, 2))
    expected = _is_free_brute_force(grid, points, radius)
    assert 0.1 < expected.mean() < 0.9
    np.testing.assert_array_equal(grid.is_free(points, radius), expected)
    batch = torch.tensor(points.reshape(50, 100, 2), dtype=torch.float32)
    out = grid.is_free(batch, radius)
    assert isinstance(out, torch.Tensor) and out.shape == (50, 100) and out.dtype == torch.bool


def test_is_free_known_points():
    grid = MazeGrid.from_layout("umaze")
    points = np.array([[1.0, 1.0], [2.0, 1.0], [1.0, 0.45], [1.0, 0.55], [0.65, 1.0], [-3.0, 1.0], [np.nan, 1.0]])
    assert grid.is_free(points).tolist() == [True, False, False, True, True, False, False]
    assert grid.is_free(points, radius=0.1).tolist() == [True, False, False, False, True, False, False]


def test_shortest_path():
    grid = MazeGrid.from_layout("umaze")
    path = grid.shortest_path((3, 1), (1, 1))
    assert path.tolist() == [[3, 1], [3, 2], [3, 3], [2, 3], [1, 3], [1, 2], [1, 1]]
    large = MazeGrid.from_layout("large")
    dist = large.distances_to(large.goal_cell)
    for start in large.free_cells:
        path = large.shortest_path(start, large.goal_cell)
        steps = np.abs(np.diff(path, axis=0)).sum(1)
        assert np.all(steps == 1) and not large.walls[path[:, 0], path[:, 1]].any()
        assert len(path) - 1 == dist[tuple(start)]
    # counted by hand along the corridors: (7, 1) -> (5, 1) -> (3, 1) -> (3, 6) -> (5, 6) -> (5, 8) -> (7, 9)
    assert dist[7, 1] == 18 and dist[1, 1] == 14 and dist.max() == 18
    assert (dist[large.walls] == -1).all()


# ---------------------------------------------------------------------------- dynamics
def test_constants_from_d4rl_model():
    mass = 1000.0 * 4.0 / 3.0 * math.pi * 0.1**3  # sphere radius 0.1, density 1000
    assert maze.BALL_MASS == pytest.approx(4.18879, abs=1e-5)
    assert maze.ACCEL_PER_ACTION == pytest.approx(100.0 / (mass + 0.01 * 1.0))
    assert maze.ACCEL_PER_ACTION == pytest.approx(23.8164, abs=1e-4)
    assert maze.VELOCITY_DECAY == pytest.approx(0.997618, abs=1e-6)


@pytest.mark.parametrize("action", [(1.0, 0.0), (0.0, -0.5), (-0.3, 0.7)])
def test_free_space_acceleration_and_integration(action):
    env = make("large", start=(3.0, 4.0), goal=(7.0, 9.0))  # row 3 is free from column 1 to 6
    a = np.array(action)
    pos, vel = np.array([3.0, 4.0]), np.zeros(2)
    for _ in range(15):
        obs, *_ = env.step(a)
        vel = 0.997618 * vel + 0.01 * 23.8164 * a  # implicit-damping Euler, constants by hand
        pos = pos + 0.01 * vel
        np.testing.assert_allclose(env.state[2:], vel, rtol=1e-5)
        np.testing.assert_allclose(env.state[:2], pos, atol=1e-7)
    # first step from rest: acceleration per unit action
    env = make("large", start=(3.0, 4.0), goal=(7.0, 9.0))
    env.step(a)
    np.testing.assert_allclose(env.state[2:] / 0.01, 23.8164 * a, rtol=1e-5)


def test_velocity_clipped_to_five_before_step():
    env = make("large", start=(3.0, 3.0), goal=(7.0, 9.0))
    env.vel = (9.0, -7.0)
    env.step(np.zeros(2))
    np.testing.assert_allclose(env.state[2:], [5.0 * maze.VELOCITY_DECAY, -5.0 * maze.VELOCITY_DECAY])


def test_out_of_range_actions_are_clipped():
    env1, env2 = make(), make()
    env1.step(np.array([7.0, -3.0]))
    env2.step(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(env1.state, env2.state)


# ---------------------------------------------------------------------------- walls
@pytest.mark.parametrize("action, expected", [
    ((-1.0, 0.0), (0.6, 1.0)),   # wall cell (0, 1) above: stop at its face 0.5 plus the radius
    ((0.0, -1.0), (1.0, 0.6)),   # wall cell (1, 0) to the left
    ((-1.0, -1.0), (0.6, 0.6)),  # into the corner
])
def test_ball_driven_into_wall_stops_at_radius(action, expected):
    env = make("umaze", start=(1.0, 1.0), goal=(3.0, 3.0))
    for _ in range(200):
        env.step(np.array(action))
    np.testing.assert_allclose(env.state[:2], expected, atol=1e-6)
    blocked = np.array(action) != 0
    np.testing.assert_array_equal(env.state[2:][blocked], 0.0)


def test_ball_slides_around_round_wall_corner():
    # Wall cell (2, 2) has its corner at (1.5, 2.5); pushed down (+x), a ball 0.05 beside its face
    # stops on the face, one 0.05 past the corner is deflected around it, one 0.15 past goes straight.
    corner = np.array([1.5, 2.5])
    face = make("umaze", start=(1.0, 2.45), goal=(3.0, 3.0))
    for _ in range(100):
        face.step(np.array([1.0, 0.0]))
    np.testing.assert_allclose(face.state, [1.4, 2.45, 0.0, 0.0], atol=1e-6)
    env = make("umaze", start=(1.0, 2.55), goal=(3.0, 3.0))
    track = []
    for _ in range(100):
        env.step(np.array([1.0, 0.0]))
        track.append(env.state)
    track = np.array(track)
    gap = np.linalg.norm(track[:, :2] - corner, axis=1)
    assert 0.1 <= gap.min() < 0.1 + 1e-3  # rolled on the corner, touching it
    assert track[:, 3].max() > 0.1 and track[-1, 0] == pytest.approx(3.4, abs=1e-6)  # pushed sideways, went down
    assert track[-1, 1] > 2.9
    clear = make("umaze", start=(1.0, 2.65), goal=(3.0, 3.0))
    for _ in range(60):
        clear.step(np.array([1.0, 0.0]))
    assert clear.state[1] == pytest.approx(2.65) and clear.state[0] > 3.0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ball_never_enters_walls_under_random_pushes(layout):
    env = PointMazeEnv(layout)
    rng = np.random.default_rng(1)
    grid = env.grid
    positions, n_blocked = [], 0
    for episode in range(4):
        env.reset(seed=episode)
        action = rng.uniform(-1, 1, 2)
        for t in range(1500):
            if t % 40 == 0:  # persistent pushes reach the walls at speed
                action = np.sign(rng.uniform(-1, 1, 2))
            obs, *_ = env.step(action)
            positions.append(env.state[:2])
            n_blocked += int(np.any(env.state[2:] == 0.0))
    positions = np.array(positions)
    assert grid.is_free(positions, maze.BALL_RADIUS).all()
    assert not grid.walls[tuple(grid.xy_to_cell(positions).T)].any()
    assert n_blocked > 100  # the walls were actually hit
    # and some positions came within a millimetre of touching
    assert not grid.is_free(positions, maze.BALL_RADIUS + 1e-3).all()


# ---------------------------------------------------------------------------- reward and episodes
def test_reward_region_is_half_unit_disc():
    goal = (1.0, 1.0)
    inside = make("umaze", start=(1.0, 1.49), goal=goal)
    assert inside.step(np.zeros(2))[1] == 1.0
    outside = make("umaze", start=(1.0, 1.51), goal=goal)
    obs, reward, terminated, truncated, info = outside.step(np.zeros(2))
    assert reward == 0.0 and not terminated and not truncated
    np.testing.assert_array_equal(info["goal"], goal)


@pytest.mark.parametrize("layout, length", [("umaze", 300), ("medium", 600), ("large", 800)])
def test_truncation_lengths(layout, length):
    env = gym.make(IDS[layout])
    assert env.spec.max_episode_steps == length
    env.reset(seed=0)
    for t in range(1, length + 1):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == length)
    raw = PointMazeEnv(layout)  # the unwrapped env truncates by itself too
    raw.reset(seed=0)
    assert [raw.step(np.zeros(2))[3] for _ in range(length)][-2:] == [False, True]


def test_reset_distribution():
    env = PointMazeEnv("medium")
    grid = env.grid
    for seed in range(50):
        obs, info = env.reset(seed=seed)
        for point in (obs[:2], info["goal"]):
            offset = point - grid.xy_to_cell(point)
            assert np.all(np.abs(offset) <= 0.1 + 1e-6) and grid.is_free(point)
        assert np.all(obs[2:] == 0.0) and obs.dtype == np.float32 and obs.shape == (4,)


def test_determinism_by_seed():
    def rollout(seed):
        env = gym.make(IDS["medium"])
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        trace = [obs, info["goal"]]
        for _ in range(100):
            trace.append(env.step(env.action_space.sample())[0])
        return np.concatenate(trace)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_env_checker_passes(layout):
    check_env(gym.make(IDS[layout], render_mode="rgb_array").unwrapped, skip_render_check=False)


def test_render_draws_walls_goal_and_ball():
    env = make("umaze", start=(1.0, 3.0), goal=(3.0, 1.0), render_mode="rgb_array", cell_pixels=20)
    image = env.render()
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    wall, floor, ball = image[10, 10], image[70, 50], image[30, 70]  # cells (0, 0), (3, 2), (1, 3)
    assert not np.array_equal(wall, floor) and not np.array_equal(ball, floor)
    assert not np.array_equal(image[70, 30], floor)  # the goal region at cell (3, 1)
    assert PointMazeEnv("umaze").render() is None


# ---------------------------------------------------------------------------- errors
def test_unknown_layout():
    with pytest.raises(ValueError, match=r"unknown maze layout 'bigmaze'.*\['large', 'medium', 'umaze'\]"):
        PointMazeEnv("bigmaze")


@pytest.mark.parametrize("options, message", [
    ({"start": (2.0, 1.0)},
     r"start \(2\.00, 1\.00\) lies inside wall cell \(2, 1\); free cells \(row, col\) are \(1, 1\)"),
    ({"goal": (0.0, 0.0)}, r"goal \(0\.00, 0\.00\) lies inside wall cell \(0, 0\)"),
    ({"goal": (9.0, 1.0)}, r"goal \(9\.00, 1\.00\) lies outside the umaze maze"),
    ({"start": (1.0, 0.55)}, r"ball of radius 0\.1 would overlap a wall"),
    ({"start": (np.nan, 1.0)}, r"start must be a finite \(x, y\) pair"),
    ({"goal": (1.0, 1.0, 0.0)}, r"goal must be a finite \(x, y\) pair"),
    ({"target": (1.0, 1.0)}, r"unknown reset options \['target'\]"),
])
def test_bad_start_or_goal(options, message):
    with pytest.raises(ValueError, match=message):
        PointMazeEnv("umaze").reset(seed=0, options=options)


@pytest.mark.parametrize("action, message", [
    (np.array([np.nan, 0.0]), r"action must be finite"),
    (np.array([0.0, np.inf]), r"action must be finite"),
    (np.zeros(3), r"action must have shape \(2,\).*got shape \(3,\)"),
    (np.zeros((1, 2)), r"action must have shape \(2,\).*got shape \(1, 2\)"),
])
def test_bad_actions(action, message):
    env = make()
    with pytest.raises(ValueError, match=message):
        env.step(action)


# ---------------------------------------------------------------------------- start velocity
def test_reset_starts_the_ball_at_the_given_velocity_up_to_the_speed_limit():
    env = PointMazeEnv("umaze")
    obs, _ = env.reset(seed=0, options={"start": (1.0, 1.0), "velocity": (1.5, -2.25)})
    np.testing.assert_array_equal(obs, np.array([1.0, 1.0, 1.5, -2.25], np.float32))
    assert env.vel == (1.5, -2.25) and all(type(v) is float for v in env.vel)
    obs, _ = env.reset(seed=0, options={"start": (1.0, 1.0), "velocity": [5, -5]})   # |v| = 5 is allowed
    np.testing.assert_array_equal(obs[2:], [5.0, -5.0])
    assert PointMazeEnv.check_velocity(np.array([-5.0, 0.25])) == (-5.0, 0.25)


@pytest.mark.parametrize("velocity, shown", [
    ((5.5, 0.0), r"\[5\.5, 0\.0\]"), ((0.0, -6.0), r"\[0\.0, -6\.0\]"), ((np.nan, 0.0), r"\[nan, 0\.0\]"),
    ((0.0, np.inf), r"\[0\.0, inf\]"), ((1.0, 2.0, 3.0), r"\[1\.0, 2\.0, 3\.0\]"), ((1.0,), r"\[1\.0\]"),
])
def test_reset_rejects_a_start_velocity_that_is_too_fast_not_finite_or_not_a_pair(velocity, shown):
    message = r"^velocity must be a finite \(vx, vy\) with \|vx\|, \|vy\| <= 5\.0, got " + shown + "$"
    with pytest.raises(ValueError, match=message):
        PointMazeEnv("umaze").reset(seed=0, options={"start": (1.0, 1.0), "velocity": velocity})
    with pytest.raises(ValueError, match=message):
        PointMazeEnv.check_velocity(velocity)


def test_reset_draws_the_start_then_the_goal_as_a_free_cell_plus_uniform_noise_from_the_seed():
    """``reset(seed)``: a free cell, then an offset ``U(-0.1, 0.1)`` per axis, for the start and then the goal,
    all from gymnasium's generator of that seed (so the draws can be repeated here)."""
    from gymnasium.utils import seeding

    env = PointMazeEnv("medium")
    cells = env.grid.free_cells
    offsets = []
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        rng, _ = seeding.np_random(seed)
        start = cells[rng.integers(len(cells))] + rng.uniform(-0.1, 0.1, size=2)
        goal = cells[rng.integers(len(cells))] + rng.uniform(-0.1, 0.1, size=2)
        np.testing.assert_array_equal(obs[:2], start.astype(np.float32))
        np.testing.assert_array_equal(info["goal"], goal)
        offsets.append(start - cells[np.argmin(np.abs(cells - start).sum(1))])
    offsets = np.array(offsets)
    assert (offsets < 0).any() and (offsets > 0).any() and not np.allclose(offsets[:, 0], offsets[:, 1])


def test_defaults_spaces_and_render_mode_check():
    env = PointMazeEnv()                                         # the defaults: U-Maze, 32 pixels per cell
    assert env.grid.layout == "umaze" and env.max_episode_steps == 300
    env.render_mode = "rgb_array"
    env.reset(seed=0)
    assert env.render().shape == (5 * 32, 5 * 32, 3)
    # actions in [-1, 1]^2; observations inside the maze, speeds up to one full push past the clip at 5
    np.testing.assert_array_equal(env.action_space.low, [-1.0, -1.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0, 1.0])
    v_bound = np.float32(maze.MAX_SPEED + maze.DT * maze.ACCEL_PER_ACTION)
    np.testing.assert_array_equal(env.observation_space.low, np.array([-0.5, -0.5, -v_bound, -v_bound], np.float32))
    np.testing.assert_array_equal(env.observation_space.high, np.array([4.5, 4.5, v_bound, v_bound], np.float32))
    env.reset(seed=0, options={"start": (1.0, 1.0), "velocity": (5.0, -5.0)})
    obs = env.step(np.array([1.0, -1.0]))[0]
    assert env.observation_space.contains(obs) and abs(obs[2]) > 5.0      # the bound is reached from 5 in one step
    with pytest.raises(ValueError, match=r"^render_mode must be None or 'rgb_array', got 'human'$"):
        PointMazeEnv(render_mode="human")


def test_reward_counts_the_rim_of_the_goal_disc_and_distance_is_euclidean():
    at_rim = make("umaze", start=(1.0, 1.5), goal=(1.0, 1.0))             # exactly GOAL_RADIUS = 0.5 away
    obs, reward, _, _, info = at_rim.step(np.zeros(2))                   # at rest, no force: it stays there
    assert info["distance"] == 0.5 and reward == 1.0
    along_x = make("umaze", start=(1.0, 3.0), goal=(3.0, 3.0))
    assert along_x.distance_to_goal() == 2.0 and along_x.step(np.zeros(2))[4]["distance"] == 2.0
    assert make("umaze", start=(1.0, 1.0), goal=(1.3, 1.4)).distance_to_goal() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("goal", [(-0.5, 1.0), (4.5, 1.0), (1.0, -0.5), (1.0, 4.5), (-0.5000001, 1.0), (1.0, 4.5000001)])
def test_goal_check_agrees_with_the_grid_on_the_outer_edge(goal):
    """The maze's outer square is closed, as in ``MazeGrid.is_free``: a point on it is no wall's inside."""
    env = PointMazeEnv("umaze")
    if env.grid.is_free(np.array(goal)):
        env.reset(seed=0, options={"goal": goal})
        np.testing.assert_array_equal(env.goal, goal)
    else:
        with pytest.raises(ValueError, match="lies outside the umaze maze"):
            env.reset(seed=0, options={"goal": goal})


def test_bad_point_messages_name_the_values_and_the_coordinates():
    cells = r"free cells \(row, col\) are \(1, 1\), \(1, 2\), \(1, 3\), \(2, 3\), \(3, 1\), \(3, 2\), \(3, 3\); " \
            r"cell \(i, j\) is centred at \(x, y\) = \(i, j\)$"
    with pytest.raises(ValueError, match=r"^goal \(2\.00, 1\.00\) lies inside wall cell \(2, 1\); " + cells):
        PointMazeEnv("umaze").reset(seed=0, options={"goal": (2.0, 1.0)})
    with pytest.raises(ValueError, match=r"^start must be a finite \(x, y\) pair, got \[nan, 1\.0\]$"):
        PointMazeEnv("umaze").reset(seed=0, options={"start": (np.nan, 1.0)})


def test_dynamics_noise_kicks_the_velocity_by_sigma_times_a_seeded_normal():
    # a kick is added to the new velocity before the position moves: with zero action from rest, v_1 = kick, x_1 = DT kick
    sigma = 0.05
    env = gym.make("tutorial_lib/PointMaze-UMaze-v0", dynamics_noise=sigma)
    env.reset(seed=3, options={"start": (1.0, 1.0), "goal": (3.0, 1.0)})
    expected = sigma * np.random.default_rng(3).standard_normal(2)   # gymnasium seeds np_random with PCG64(seed)
    obs, *_ = env.step(np.zeros(2))
    np.testing.assert_allclose(obs[2:], expected, rtol=1e-5)
    np.testing.assert_allclose(obs[:2], np.array([1.0, 1.0]) + maze.DT * expected, rtol=1e-6)
    # many kicks: the per-step velocity change has the std sigma and mean zero (kicks of 20k steps, ball held in place)
    kicks = []
    for _ in range(2000):
        v0 = env.unwrapped.vel
        obs, *_ = env.step(np.zeros(2))
        kicks.append(np.asarray(env.unwrapped.vel) - maze.VELOCITY_DECAY * np.asarray(v0))
        env.unwrapped.pos, env.unwrapped.vel = (1.0, 1.0), (0.0, 0.0)
    kicks = np.array(kicks)
    assert kicks.std() == pytest.approx(sigma, rel=0.05) and abs(kicks.mean()) < 4 * sigma / np.sqrt(kicks.size)
    # the same seed gives the same episode; another seed another one; sigma 0 is D4RL's deterministic maze
    def run(seed, noise):
        e = gym.make("tutorial_lib/PointMaze-UMaze-v0", dynamics_noise=noise)
        e.reset(seed=seed, options={"start": (1.0, 1.0), "goal": (3.0, 1.0)})
        return np.array([e.step(np.array([0.5, 0.2]))[0] for _ in range(50)])
    np.testing.assert_array_equal(run(1, sigma), run(1, sigma))
    assert not np.allclose(run(1, sigma), run(2, sigma))
    np.testing.assert_array_equal(run(1, 0.0), run(2, 0.0))
    # ... whose steps draw no random numbers: the next unseeded reset is the same after 0 steps or 50
    def next_start(n_steps):
        e = PointMazeEnv("umaze")
        e.reset(seed=4)
        for _ in range(n_steps):
            e.step(np.array([0.5, 0.2]))
        return e.reset()[0]
    np.testing.assert_array_equal(next_start(0), next_start(50))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "loud", None])
def test_dynamics_noise_must_be_a_finite_nonnegative_number(bad):
    with pytest.raises(ValueError, match="dynamics_noise must be"):
        maze.PointMazeEnv("umaze", dynamics_noise=bad)
