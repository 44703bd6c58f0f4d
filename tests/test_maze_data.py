"""Tests of the maze2d expert (waypoint controller), its evaluation, and the offline dataset."""

import numpy as np
import pytest

import tutorial_lib.envs  # noqa: F401  (registers the ids)
from tutorial_lib.envs.maze import EPISODE_LENGTHS, PointMazeEnv
from tutorial_lib.envs.maze_data import (
    arrival_points,
    generate_dataset,
    load_dataset,
    load_or_generate,
    main,
    save_dataset,
    split_at_arrivals,
    split_at_goal_exits,
)
from tutorial_lib.envs.maze_expert import (
    RandomPolicy,
    WaypointController,
    evaluate_policy,
    make_eval_pairs,
    normalized_score,
)
from tutorial_lib.envs.maze_grid import MazeGrid

IDS = {
    "umaze": "tutorial_lib/PointMaze-UMaze-v0",
    "medium": "tutorial_lib/PointMaze-Medium-v0",
    "large": "tutorial_lib/PointMaze-Large-v0",
}


@pytest.fixture(scope="module")
def medium_data():
    return generate_dataset("medium", 20_000, seed=7)


# ---------------------------------------------------------------------------- the expert
def test_controller_action_is_clipped_pd_law():
    grid = MazeGrid.from_layout("umaze")
    controller = WaypointController(grid, jitter=0.0, seed=0)
    # goal in the same cell: the only waypoint is the goal, a = clip(10 (g - p) - v)
    action = controller(np.array([1.0, 1.0, 0.3, -0.2]), np.array([1.05, 0.98]))
    np.testing.assert_allclose(action, [10 * 0.05 - 0.3, 10 * -0.02 + 0.2], atol=1e-6)
    action = controller(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.09, 1.0]))
    np.testing.assert_allclose(action, [0.9, 0.0], atol=1e-6)
    # far goal: first waypoint is the next cell of the shortest path, (1, 2); action saturates
    controller = WaypointController(grid, jitter=0.0, seed=0)
    action = controller(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 1.0]))
    np.testing.assert_allclose(action, [0.0, 1.0])
    np.testing.assert_allclose(controller.waypoints, [(1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)])
    # the next waypoint is taken only within 0.1 of the current one
    goal = np.array([3.0, 1.0])
    action = controller(np.array([1.0, 1.85, 0.0, 0.8]), goal)
    assert controller.waypoint_index == 0 and action[1] == pytest.approx(10 * 0.15 - 0.8)
    controller(np.array([1.0, 1.95, 0.0, 0.0]), goal)
    assert controller.waypoint_index == 1


def test_controller_waypoints_jittered_within_a_tenth():
    grid = MazeGrid.from_layout("large")
    controller = WaypointController(grid, seed=0)
    waypoints = controller.plan((7.0, 1.0), (7.05, 9.02))
    offsets = waypoints[:-1] - np.round(waypoints[:-1])
    assert np.all(np.abs(offsets) <= 0.1) and np.abs(offsets).max() > 0.05
    np.testing.assert_allclose(waypoints[-1], (7.05, 9.02))
    assert len(waypoints) == 18


def _steps_to_goal(env, start, goal, controller):
    obs, info = env.reset(seed=0, options={"start": start, "goal": goal})
    controller.reset()
    for t in range(1, env.max_episode_steps + 1):
        obs, reward, *_ = env.step(controller(obs, info["goal"]))
        if reward > 0:
            return t
    return None


@pytest.mark.parametrize("layout", ["umaze", "medium", "large"])
def test_controller_reaches_goal_from_every_free_cell(layout):
    env = PointMazeEnv(layout)
    grid = env.grid
    controller = WaypointController(grid, seed=0)
    for start in grid.free_cells:
        farthest = np.unravel_index(np.argmax(grid.distances_to(start)), grid.shape)
        for goal_cell in {tuple(grid.goal_cell), tuple(int(c) for c in farthest)}:
            steps = _steps_to_goal(env, start + 0.1, np.array(goal_cell) - 0.1, controller)
            assert steps is not None, f"no arrival from {tuple(start)} to {goal_cell} in {layout}"


def test_make_eval_pairs():
    pairs = make_eval_pairs("medium", 100, seed=0)
    np.testing.assert_array_equal(pairs, make_eval_pairs("medium", 100, seed=0))
    assert not np.array_equal(pairs, make_eval_pairs("medium", 100, seed=1))
    cells = np.round(pairs)
    assert pairs.shape == (100, 2, 2) and np.all(np.abs(pairs - cells) <= 0.1)
    assert np.all(np.any(cells[:, 0] != cells[:, 1], axis=1))
    assert MazeGrid.from_layout("medium").is_free(pairs.reshape(-1, 2)).all()


def test_evaluate_expert_and_random():
    pairs = make_eval_pairs("umaze", 12, seed=0)
    grid = MazeGrid.from_layout("umaze")
    expert = evaluate_policy(IDS["umaze"], WaypointController(grid, seed=0), pairs)
    random = evaluate_policy(IDS["umaze"], RandomPolicy(seed=0), pairs)
    assert expert.returns.shape == expert.success.shape == expert.steps_to_goal.shape == (12,)
    assert expert.success.all() and np.all(expert.steps_to_goal <= 300)
    assert expert.summary()["return"] > 2 * random.summary()["return"]
    assert expert.summary()["success_rate"] == 1.0 > random.summary()["success_rate"]
    assert np.all(expert.returns <= 300 - expert.steps_to_goal + 1)
    again = evaluate_policy(IDS["umaze"], RandomPolicy(seed=0), pairs)
    np.testing.assert_array_equal(again.returns, random.returns)
    assert normalized_score(expert.summary()["return"], random.summary()["return"], expert.summary()["return"]) == 100.0
    assert normalized_score(random.summary()["return"], random.summary()["return"], expert.summary()["return"]) == 0.0
    with pytest.raises(ValueError, match=r"pairs must have shape \(n_pairs, 2, 2\)"):
        evaluate_policy(IDS["umaze"], RandomPolicy(0), pairs[:, 0])


# ---------------------------------------------------------------------------- the dataset
def test_dataset_shapes_and_determinism(medium_data):
    d = medium_data
    assert d["observations"].shape == (20_000, 4) and d["observations"].dtype == np.float32
    assert d["actions"].shape == (20_000, 2) and d["goals"].shape == (20_000, 2)
    assert d["arrivals"].dtype == np.bool_ and str(d["layout"]) == "medium" and int(d["seed"]) == 7
    again = generate_dataset("medium", 20_000, seed=7)
    for key in ("observations", "actions", "goals", "arrivals", "timeouts"):
        np.testing.assert_array_equal(again[key], d[key])
    other = generate_dataset("medium", 2_000, seed=8)
    assert not np.array_equal(other["observations"], d["observations"][:2_000])


def test_dataset_is_one_continuous_stream(medium_data):
    """Replaying the recorded actions in the environment from the first state gives the recorded states."""
    d = medium_data
    env = PointMazeEnv("medium")
    env.reset(seed=0, options={"start": d["observations"][0, :2].astype(np.float64), "goal": d["goals"][0]})
    assert np.all(d["observations"][0, 2:] == 0.0)
    env.pos = tuple(float(v) for v in d["observations"][0, :2])  # the float32 copy, exactly
    replay = [env.step(a)[0] for a in d["actions"][:3000]]
    np.testing.assert_allclose(np.array(replay), d["observations"][1:3001], atol=2e-3)
    assert np.abs(d["actions"]).max() <= 1.0


def test_arrivals_within_radius_and_goals_change_there(medium_data):
    d = medium_data
    points, goals = arrival_points(d), d["goals"][d["arrivals"]]
    assert len(points) > 50
    assert np.all(np.linalg.norm(points - goals, axis=1) <= 0.1 + 1e-6)  # well inside the 0.5 reward disc
    idx = np.flatnonzero(d["arrivals"])
    idx = idx[idx + 1 < len(d["goals"])]
    assert np.all(np.any(d["goals"][idx + 1] != d["goals"][idx], axis=1))
    grid = MazeGrid.from_layout("medium")
    assert grid.is_free(d["goals"]).all() and grid.is_free(d["observations"][:, :2], 0.099).all()
    assert d["timeouts"].sum() == 0  # the expert never needs an episode length


def test_segments_split_at_arrivals(medium_data):
    d = medium_data
    segments = split_at_arrivals(d)
    assert segments[0, 0] == 0 and np.all(segments[1:, 0] == segments[:-1, 1])
    for start, stop in segments:
        assert d["arrivals"][stop - 1] and not d["arrivals"][start:stop - 1].any()
        assert np.all(d["goals"][start:stop] == d["goals"][start])
    tail = split_at_arrivals(d, include_last=True)
    assert tail[-1, 1] == len(d["arrivals"]) and len(tail) == len(segments) + 1
    lengths = np.diff(segments, axis=1)
    assert lengths.max() <= EPISODE_LENGTHS["medium"]


def test_split_at_goal_exits():
    xy = np.array([[0, 0], [1, 0], [1, 0.1], [2, 0], [3, 0], [1, 0], [2, 0]], dtype=float)
    observations = np.concatenate([xy, np.zeros_like(xy)], axis=1)
    segments = split_at_goal_exits(observations, goal=(1.0, 0.0))
    assert segments.tolist() == [[0, 3], [3, 6], [6, 7]]


def test_save_load_roundtrip_without_pickle(tmp_path, medium_data):
    path = tmp_path / "maze" / "medium.npz"
    save_dataset(str(path), medium_data)
    loaded = load_dataset(str(path))
    for key in ("observations", "actions", "goals", "arrivals", "timeouts"):
        np.testing.assert_array_equal(loaded[key], medium_data[key])
    assert loaded["layout"] == "medium"
    with np.load(path, allow_pickle=False) as f:  # plain arrays only: loading needs no pickle
        assert all(f[k].dtype != object for k in f.files)
    broken = {k: v for k, v in medium_data.items() if k != "actions"}
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(ValueError, match=r"not a maze dataset: missing arrays \['actions'\]"):
        load_dataset(str(tmp_path / "broken.npz"))


def test_command_line(tmp_path, capsys):
    out = tmp_path / "umaze.npz"
    main(["--layout", "umaze", "--steps", "3000", "--seed", "1", "--out", str(out)])
    assert "umaze: 3000 transitions" in capsys.readouterr().out
    data = load_dataset(str(out))
    np.testing.assert_array_equal(data["observations"], generate_dataset("umaze", 3000, seed=1)["observations"])


def test_generate_rejects_bad_input():
    with pytest.raises(ValueError, match=r"unknown maze layout 'maze'"):
        generate_dataset("maze", 10)
    with pytest.raises(ValueError, match=r"n_steps must be a positive"):
        generate_dataset("umaze", 0)


def test_make_eval_pairs_fixed_goal():
    pairs = make_eval_pairs("large", 50, seed=0, fixed_goal=True)
    np.testing.assert_array_equal(pairs[:, 1], np.broadcast_to([7.0, 9.0], (50, 2)))
    assert np.all(np.any(np.round(pairs[:, 0]) != [7.0, 9.0], axis=1))
    assert len(np.unique(np.round(pairs[:, 0]), axis=0)) > 20


def test_load_or_generate(tmp_path):
    path = str(tmp_path / "umaze.npz")
    first = load_or_generate("umaze", path, n_steps=1000, seed=2)
    stamp = (tmp_path / "umaze.npz").stat().st_mtime_ns
    again = load_or_generate("umaze", path, n_steps=1000, seed=2)  # loaded, not regenerated
    assert (tmp_path / "umaze.npz").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again["observations"], first["observations"])
    other = load_or_generate("umaze", path, n_steps=500, seed=2)  # another size: regenerated
    assert len(other["observations"]) == 500 and len(load_dataset(path)["observations"]) == 500


def test_a_noisy_stream_keeps_the_goals_and_follows_the_noisy_dynamics(tmp_path, monkeypatch):
    from tutorial_lib.envs import maze

    clean, noisy = generate_dataset("umaze", 3000, seed=2), generate_dataset("umaze", 3000, seed=2, dynamics_noise=0.05)
    assert float(noisy["dynamics_noise"]) == 0.05 and float(clean["dynamics_noise"]) == 0.0
    # the first goal and start are the same draws; the paths then differ by the kicks
    np.testing.assert_array_equal(noisy["goals"][0], clean["goals"][0])
    np.testing.assert_array_equal(noisy["observations"][0], clean["observations"][0])
    assert not np.allclose(noisy["observations"][1:], clean["observations"][1:])
    # each step: v_{t+1} - (the deterministic step's v) is a kick of std 0.05 (the kicks, recomputed from the data)
    walls = tuple(tuple(bool(w) for w in row) for row in MazeGrid.from_layout("umaze").walls)
    obs, act = noisy["observations"].astype(np.float64), noisy["actions"].astype(np.float64)
    free = []
    for t in range(2999):
        pos, vel = maze.point_mass_step(walls, tuple(obs[t, :2]), tuple(obs[t, 2:]), tuple(act[t]))
        moved = obs[t + 1, :2] - np.asarray(pos)
        free.append(moved / maze.DT)       # away from walls the position moves by DT * kick more
    kicks = np.array(free)
    assert np.median(np.abs(kicks)) == pytest.approx(0.05 * 0.6745, rel=0.1)   # the median |N(0, s^2)| is 0.6745 s
    # load_stream keeps noisy streams in their own file and regenerates on a mismatch
    monkeypatch.setenv("TUTORIAL_LIB_DATA", str(tmp_path))
    from tutorial_lib.envs.maze_data import load_stream

    a = load_stream("umaze", 500, seed=2, dynamics_noise=0.05)
    assert (tmp_path / "maze" / "umaze_500_seed2_noise0.05.npz").exists() and a["dynamics_noise"] == 0.05
    np.testing.assert_array_equal(a["observations"], noisy["observations"][:500])
    b = load_stream("umaze", 500, seed=2)
    assert (tmp_path / "maze" / "umaze_500_seed2.npz").exists() and b["dynamics_noise"] == 0.0
    np.testing.assert_array_equal(b["observations"], clean["observations"][:500])
    with pytest.raises(ValueError, match="dynamics_noise must be"):
        generate_dataset("umaze", 10, dynamics_noise=-1)
