"""Tests of the scripted Push-T expert and of the demonstration files."""

import math

import numpy as np
import pytest

from tutorial_lib.envs.pusht import GOAL_POSE, PushTEnv, make_sim_state, simulate
from tutorial_lib.envs.pusht_demos import (
    check_demonstrations,
    load_demonstrations,
    main,
    mirror_actions,
    mirror_demonstrations,
    mirror_states,
    pack_episodes,
    save_demonstrations,
    state_to_keypoints_obs,
)
from tutorial_lib.envs.pusht_expert import (
    AGENT_RADIUS,
    ExpertConfig,
    PushTExpert,
    distances_to_block,
    keypoint_error,
    plan_waypoints,
    run_expert_episode,
    segment_is_clear,
)
from tutorial_lib.envs.pusht_geometry import coverage, pose_transform

EASY_STATE = [100.0, 450.0, *(GOAL_POSE + [30.0, -20.0, 0.4])]


@pytest.fixture(scope="module")
def easy_episode():
    env = PushTEnv(max_episode_steps=120)
    return run_expert_episode(env, PushTExpert(seed=0), state=EASY_STATE)


def test_expert_solves_an_easy_state(easy_episode):
    start = coverage(np.array(EASY_STATE[2:]), GOAL_POSE)
    assert start < 0.5
    assert easy_episode["success"] and easy_episode["max_coverage"] > 0.95
    assert len(easy_episode["actions"]) < 120


def test_expert_turns_a_block_in_place():
    # position already right, angle 1 rad off: only a pose error that sees the angle helps
    state = [400.0, 400.0, *(GOAL_POSE + [0.0, 0.0, 1.0])]
    episode = run_expert_episode(PushTEnv(max_episode_steps=150), PushTExpert(seed=2),
                                 state=state)
    assert episode["success"]


def test_expert_is_deterministic_by_seed(easy_episode):
    env = PushTEnv(max_episode_steps=120)
    again = run_expert_episode(env, PushTExpert(seed=0), state=EASY_STATE)
    np.testing.assert_array_equal(again["actions"], easy_episode["actions"])


def test_first_primitive_reduces_pose_error():
    env = PushTEnv()
    env.reset(options={"state": EASY_STATE})
    before = keypoint_error(env.block_pose)
    actions = PushTExpert(seed=1).plan(env.sim_state)
    assert actions.ndim == 2 and actions.shape[1] == 2
    assert np.all((actions >= 0) & (actions <= 512))
    for a in actions:
        env.step(a)
    assert keypoint_error(env.block_pose) < before - 5.0


def test_waypoints_go_round_the_block():
    pose = np.array([256.0, 256.0, 0.3])
    start = pose_transform(np.array([0.0, -60.0]), pose)  # beyond the bar's top
    goal = pose_transform(np.array([0.0, 150.0]), pose)   # beyond the stem's foot
    assert not segment_is_clear(start, goal, pose, AGENT_RADIUS)
    path = [start, *plan_waypoints(start, goal, pose, ExpertConfig())]
    assert len(path) >= 3 and np.allclose(path[-1], goal)
    for a, b in zip(path[:-1], path[1:]):
        assert segment_is_clear(a, b, pose, AGENT_RADIUS)


def test_distances_to_block():
    pose = np.array([200.0, 200.0, 0.0])
    points = np.array([[200.0, 210.0], [200.0, 300.0], [300.0, 215.0], [200.0, 200.0]])
    np.testing.assert_allclose(distances_to_block(points, pose), [0.0, 0.0, 40.0, 0.0])
    assert distances_to_block(np.array([[200.0, 150.0]]), pose)[0] == pytest.approx(50.0)


def test_symmetric_state_is_pushed_from_both_sides():
    # the block upside down on the goal, the agent on its symmetry axis: turning it either
    # way is as good, so different seeds should choose different sides
    pose = GOAL_POSE + [0.0, 0.0, math.pi]
    agent = pose_transform(np.array([0.0, 170.0]), pose)
    env = PushTEnv()
    env.reset(options={"state": [*agent, *pose]})
    c, s = math.cos(pose[2]), math.sin(pose[2])
    sides = []
    for seed in range(6):
        retreat = PushTExpert(seed=seed).plan(env.sim_state)[-1]
        sides.append(((retreat - pose[:2]) @ np.array([[c, -s], [s, c]]))[0])
    assert max(sides) > 3.0 and min(sides) < -3.0


# ------------------------------------------------------------------ demonstration files
def test_demonstrations_pack_check_and_round_trip(easy_episode, tmp_path):
    data = pack_episodes([easy_episode, easy_episode], seeds=[7, 8], seed=0)
    check_demonstrations(data)
    n = len(easy_episode["actions"])
    assert data["obs"].shape == (2 * n, 5) and data["episode_ends"].tolist() == [n, 2 * n]
    path = tmp_path / "demos.npz"
    save_demonstrations(str(path), data)
    loaded = load_demonstrations(str(path))
    for key, value in data.items():
        np.testing.assert_array_equal(loaded[key], value)
    # the recorded actions replay the recorded observations
    env = PushTEnv()
    obs, _ = env.reset(options={"state": EASY_STATE})
    for k in range(5):
        np.testing.assert_allclose(obs, data["obs"][k], atol=1e-3)
        obs, *_ = env.step(data["actions"][k])
    assert state_to_keypoints_obs(data["obs"][:3]).shape == (3, 20)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d.update(obs=np.where(np.arange(len(d["obs"]))[:, None] == 3, np.nan, d["obs"])),
     "NaN"),
    (lambda d: d.update(episode_ends=d["episode_ends"][::-1].copy()), "episode_ends"),
    (lambda d: d.update(actions=d["actions"][:-1]), "actions has shape"),
    (lambda d: d.update(episode_success=~d["episode_success"]), "disagree"),
    (lambda d: d.pop("coverage"), "lack arrays"),
    (lambda d: d.update(actions=d["actions"] + 600.0), r"must lie in \[0, 512\]"),
])
def test_check_demonstrations_catches_corruption(easy_episode, corrupt, message):
    data = pack_episodes([easy_episode, easy_episode], seeds=[7, 8], seed=0)
    corrupt(data)
    with pytest.raises(ValueError, match=message):
        check_demonstrations(data)


def test_command_line_writes_a_valid_file(tmp_path, capsys, monkeypatch):
    import tutorial_lib.envs.pusht_demos as pusht_demos
    monkeypatch.setattr(pusht_demos, "PushTEnv", lambda: PushTEnv(max_episode_steps=15))
    out = tmp_path / "demos.npz"
    main(["--episodes", "1", "--seed", "3", "--workers", "1", "--out", str(out)])
    data = load_demonstrations(str(out))
    assert len(data["episode_ends"]) == 1 and "success rate" in capsys.readouterr().out


# ------------------------------------------------------------------ the mirror symmetry
def test_mirror_fixes_the_goal_keeps_coverage_and_is_an_involution():
    goal_state = np.array([100.0, 300.0, *GOAL_POSE])
    np.testing.assert_allclose(mirror_states(goal_state)[2:], GOAL_POSE, atol=1e-12)
    np.testing.assert_allclose(mirror_states(goal_state)[:2], [212.0, 412.0])
    rng = np.random.default_rng(0)
    states = np.column_stack([rng.uniform(0, 512, (50, 4)), rng.uniform(0, 2 * math.pi, 50)])
    twice = mirror_states(mirror_states(states))
    np.testing.assert_allclose(twice[:, :4], states[:, :4], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (twice[:, 4] - states[:, 4]))), 0, atol=1e-9)
    poses = np.column_stack([rng.uniform(180, 330, (50, 2)), rng.uniform(-math.pi, math.pi, 50)])
    for state in np.column_stack([states[:, :2], poses]):
        assert coverage(mirror_states(state)[2:], GOAL_POSE) == pytest.approx(coverage(state[2:], GOAL_POSE), abs=1e-9)
    # the T is its own mirror image: the keypoint set is reflected, not just the pose
    kp = state_to_keypoints_obs(states[:1])[0, :18].reshape(9, 2)
    kp_m = state_to_keypoints_obs(mirror_states(states[:1]))[0, :18].reshape(9, 2)
    np.testing.assert_allclose(np.sort(mirror_actions(kp), axis=0), np.sort(kp_m, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., 5\)"):
        mirror_states(np.zeros((3, 4)))


def test_physics_commutes_with_the_mirror(easy_episode):
    """Reflected actions from the reflected start reproduce the reflected episode."""
    state, mirrored = make_sim_state(EASY_STATE), make_sim_state(mirror_states(np.array(EASY_STATE)))
    for action in easy_episode["actions"][:40]:
        state, mirrored = simulate(state, action), simulate(mirrored, mirror_actions(action))
        obs = np.array([*state[0:2], *state[4:7]])
        np.testing.assert_allclose(mirror_states(obs)[:4], mirrored[[0, 1, 4, 5]], atol=1e-6)
        assert coverage(mirrored[4:7], GOAL_POSE) == pytest.approx(coverage(state[4:7], GOAL_POSE), abs=1e-6)


def test_mirrored_demonstrations_are_valid(easy_episode):
    data = pack_episodes([easy_episode], seeds=[7], seed=0)
    flipped = mirror_demonstrations(data)
    check_demonstrations(flipped)
    np.testing.assert_array_equal(flipped["coverage"], data["coverage"])
    assert not np.allclose(flipped["obs"], data["obs"])
    np.testing.assert_allclose(mirror_actions(flipped["actions"]), data["actions"], atol=1e-4)
