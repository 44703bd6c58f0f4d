"""Tests of the Push-T environment: geometry, physics invariants, API contract."""

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from matplotlib.path import Path

import tutorial_lib.envs  # noqa: F401  (registers tutorial_lib/PushT-v0)
from tutorial_lib.envs.pusht import GOAL_POSE, PushTEnv, simulate
from tutorial_lib.envs.pusht_geometry import (
    TEE_AREA,
    block_keypoints,
    clip_convex,
    coverage,
    polygon_area,
    tee_polygons,
)

FAR_AGENT = (480.0, 30.0)  # a corner far from blocks placed near the middle


def monte_carlo_coverage(block_pose, goal_pose, n=400_000, seed=0):
    """Independent estimate: fraction of uniform points of the goal T inside the block T,
    with matplotlib's point-in-polygon test on the T's 8-vertex outline."""
    def outline(pose):
        local = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120),
                          (-15, 30), (-60, 30)], dtype=float)
        c, s = math.cos(pose[2]), math.sin(pose[2])
        return Path(local @ np.array([[c, -s], [s, c]]).T + pose[:2])
    rng = np.random.default_rng(seed)
    goal = outline(goal_pose)
    lo, hi = goal.vertices.min(0), goal.vertices.max(0)
    pts = rng.uniform(lo, hi, size=(n, 2))
    in_goal = goal.contains_points(pts)
    return outline(block_pose).contains_points(pts[in_goal]).mean()


# ------------------------------------------------------------------ geometry
def test_clip_convex_two_squares():
    a = np.array([(0, 0), (2, 0), (2, 2), (0, 2)], float)
    b = a + [1.0, 0.5]
    assert polygon_area(clip_convex(a, b)) == pytest.approx(1.0 * 1.5)
    assert len(clip_convex(a, a + [5.0, 0.0])) == 0


def test_tee_area_and_polygons():
    polys = tee_polygons(np.array([100.0, 200.0, 0.7]))
    assert polys.shape == (2, 4, 2)
    assert sum(polygon_area(p) for p in polys) == pytest.approx(TEE_AREA)


def test_coverage_is_one_at_goal_and_zero_far_away():
    assert coverage(GOAL_POSE, GOAL_POSE) == pytest.approx(1.0)
    assert coverage(GOAL_POSE + [0, 0, 2 * math.pi], GOAL_POSE) == pytest.approx(1.0)
    assert coverage(np.array([60.0, 60.0, 0.0]), GOAL_POSE) == 0.0
    # a half-turn keeps only the overlap of the bar and the stem around the origin
    assert coverage(GOAL_POSE + [0, 0, math.pi], GOAL_POSE) < 0.2


@pytest.mark.parametrize("offset", [(6.0, -4.0, 0.1), (-20.0, 15.0, -0.6), (30.0, 30.0, 2.0),
                                    (0.0, 40.0, 0.0)])
def test_coverage_matches_monte_carlo(offset):
    block = GOAL_POSE + np.array(offset)
    exact = coverage(block, GOAL_POSE)
    assert 0.0 < exact < 1.0
    assert exact == pytest.approx(monte_carlo_coverage(block, GOAL_POSE), abs=0.01)


# ------------------------------------------------------------------ physics
def make_env(state, **kwargs):
    env = PushTEnv(**kwargs)
    env.reset(options={"state": state})
    return env


def test_pd_controller_reaches_target_in_free_space():
    env = make_env([100, 100, 400, 400, 0.0])
    for _ in range(15):
        env.step([300.0, 180.0])
    assert np.linalg.norm(env.agent_position - [300.0, 180.0]) < 1.0
    assert np.linalg.norm(env.sim_state[2:4]) < 5.0  # nearly at rest


def test_block_does_not_move_unless_touched():
    env = make_env([40, 40, 256, 200, 0.3])
    pose0 = env.block_pose
    for target in ([40, 470], [470, 470], [470, 40], [40, 40]) * 2:
        for _ in range(5):
            env.step(target)
    np.testing.assert_array_equal(env.block_pose, pose0)
    for _ in range(5):
        env.step([256.0, 250.0])  # ... and does once the agent runs into it
    assert np.abs(env.block_pose - pose0).max() > 1.0


def test_pushing_moves_block_and_it_stops_when_released():
    # agent below the stem's foot (y grows downwards), pushing up the symmetry axis
    env = make_env([256, 460, 256, 300, 0.0])
    for _ in range(8):
        env.step([256.0, 380.0])
    pose = env.block_pose
    assert pose[1] < 300.0 - 20.0          # pushed up by the stem's foot
    assert abs(pose[0] - 256.0) < 0.5 and abs(pose[2]) < 0.01  # no turn on the axis
    env.step([256.0, 470.0])               # retreat
    released = env.block_pose
    env.step([256.0, 470.0])
    np.testing.assert_allclose(env.block_pose, released, atol=1e-9)  # damping 0: no drift


@pytest.mark.parametrize("quarter_turns", [0, 1, 2, 3])
def test_walls_keep_block_inside(quarter_turns):
    # the agent (never closer than 80 px to the wall) pushes a tilted T against the left
    # wall; rotated copies of the scene about the workspace centre test the other walls
    centre, turn = np.array([255.5, 255.5]), quarter_turns * math.pi / 2
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    pose = np.array([100.0, 250.0, -0.3])
    pose[0] += 9.0 - tee_polygons(pose)[..., 0].min()  # 2 px from the left wall

    def place(p):
        return centre + rot @ (np.asarray(p) - centre)

    env = make_env([*place([250.0, 250.0]), *place(pose[:2]), pose[2] + turn])
    lowest, highest = np.inf, -np.inf
    for _ in range(30):
        env.step(place([80.0, 250.0]))
        polys = tee_polygons(env.block_pose)
        lowest, highest = min(lowest, polys.min()), max(highest, polys.max())
    assert lowest > 7.0 - 3.0 and highest < 504.0 + 3.0
    assert np.linalg.norm(env.block_pose[:2] - place(pose[:2])) > 20.0  # it was pushed


def test_action_is_clipped_to_workspace():
    env = make_env([100, 100, 300, 300, 0.0])
    for _ in range(30):
        obs, *_ = env.step(np.array([-300.0, 9000.0]))
    np.testing.assert_allclose(env.agent_position, [0.0, 512.0], atol=1.0)
    assert env.observation_space.contains(obs)


def test_snapshot_restore_repeats_trajectory_exactly():
    env = make_env([256, 460, 256, 300, 0.2])
    for _ in range(4):
        env.step([256.0, 400.0])
    snap = env.snapshot()
    actions = [[256.0 + 5 * k, 380.0 - 3 * k] for k in range(15)]
    first = [env.step(a)[0] for a in actions]
    assert not np.allclose(first[0][2:], first[-1][2:])  # the block was pushed
    env.restore(snap)
    second = [env.step(a)[0] for a in actions]
    np.testing.assert_array_equal(np.array(first), np.array(second))
    with pytest.raises(TypeError, match="PushTSnapshot"):
        env.restore(env.sim_state)


def test_sim_state_is_complete():
    # mid-push, the block is moving: its velocity must be part of the state, so that
    # two half steps from the saved state equal one full step
    env = make_env([256, 460, 256, 300, 0.2])
    for _ in range(4):
        env.step([256.0, 400.0])
    state, target = env.sim_state, np.array([270.0, 380.0])
    assert np.linalg.norm(state[7:9]) > 1.0
    full = simulate(state, target, n_substeps=10)
    halves = simulate(simulate(state, target, n_substeps=5), target, n_substeps=5)
    np.testing.assert_allclose(halves, full, atol=1e-6)
    np.testing.assert_array_equal(simulate(state, target), full)  # pure: same input, same output


# ------------------------------------------------------------------ API contract
def test_env_checker_passes_for_both_observation_types():
    for obs_type in ("state", "keypoints"):
        env = gym.make("tutorial_lib/PushT-v0", obs_type=obs_type, render_mode="rgb_array")
        check_env(env.unwrapped, skip_render_check=False)


def test_reset_is_deterministic_by_seed_and_within_ranges():
    env = PushTEnv()
    obs_a, _ = env.reset(seed=123)
    actions = np.random.default_rng(0).uniform(0, 512, size=(20, 2))
    traj_a = [env.step(a)[0] for a in actions]
    obs_b, _ = env.reset(seed=123)
    traj_b = [env.step(a)[0] for a in actions]
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(np.array(traj_a), np.array(traj_b))
    starts = np.array([env.reset(seed=s)[0] for s in range(40)])
    assert len({tuple(o) for o in starts}) == 40
    assert np.all((starts[:, :2] >= 50) & (starts[:, :2] < 450))
    assert np.all((starts[:, 2:4] >= 100) & (starts[:, 2:4] < 400))


def test_reset_puts_the_whole_block_inside_the_walls():
    env = PushTEnv(obs_type="keypoints")
    for seed in range(300):
        obs, _ = env.reset(seed=seed)
        polys = tee_polygons(env.block_pose)
        assert polys.min() >= 7.0 and polys.max() <= 504.0
        assert env.observation_space.contains(obs)


def test_reward_and_termination_at_goal_and_truncation():
    env = make_env([*FAR_AGENT, *GOAL_POSE])
    _, reward, terminated, truncated, info = env.step(FAR_AGENT)
    assert terminated and not truncated and reward == 1.0 and info["is_success"]
    env = make_env([*FAR_AGENT, 150, 150, 0.0], max_episode_steps=300)
    for k in range(300):
        _, reward, terminated, truncated, _ = env.step(FAR_AGENT)
        assert truncated == (k == 299) and not terminated
    assert reward == 0.0


@pytest.mark.parametrize("shift, lo, hi", [(4.0, 0.85, 0.95), (12.0, 0.6, 0.85)])
def test_reward_is_coverage_over_095_below_the_goal(shift, lo, hi):
    """Reward clip(coverage / 0.95, 0, 1): partly on the goal it is more than the coverage, and not terminal."""
    env = make_env([*FAR_AGENT, *(GOAL_POSE + [shift, 0.0, 0.0])])
    cov = env.coverage()
    assert lo < cov < hi
    _, reward, terminated, truncated, info = env.step(FAR_AGENT)
    assert info["coverage"] == pytest.approx(cov, abs=1e-9) and not info["is_success"]
    assert reward == pytest.approx(cov / 0.95, rel=1e-9) and not terminated and not truncated


def test_bad_inputs_raise_clear_errors():
    env = make_env([100, 100, 300, 300, 0.0])
    with pytest.raises(ValueError, match="finite"):
        env.step([np.nan, 3.0])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        env.reset(options={"state": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"must lie in \[0, 512\]"):
        env.reset(options={"state": [100, 100, 600, 300, 0.0]})
    with pytest.raises(ValueError, match="finite"):
        env.reset(options={"state": [100, 100, 300, 300, np.inf]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"sate": [100, 100, 300, 300, 0.0]})
    with pytest.raises(ValueError, match="obs_type"):
        PushTEnv(obs_type="pixels")


def test_keypoint_observation_layout():
    env = PushTEnv(obs_type="keypoints")
    obs, _ = env.reset(options={"state": [111, 222, 300, 250, 0.4]})
    assert obs.shape == (20,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[:18].reshape(9, 2), block_keypoints(np.array([300, 250, 0.4])),
                               atol=1e-3)
    np.testing.assert_allclose(obs[18:], [111, 222])


def test_render_draws_goal_block_and_agent():
    env = PushTEnv(render_mode="rgb_array", render_size=128)
    env.reset(options={"state": [100, 400, 380, 100, 0.0]})
    env.step([100.0, 400.0])
    img = env.render()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    def pixel(x, y):
        return tuple(img[int(y / 4), int(x / 4)])
    assert pixel(213.6, 298.4) == (144, 238, 144)  # goal T, body point (0, 60), is green
    assert pixel(380, 115) == (119, 136, 153)     # inside the block's bar
    assert pixel(106, 406) == (65, 105, 225)      # agent, off the target's red cross
    assert pixel(100, 400) == (255, 0, 0)         # commanded target
    assert pixel(256, 480) == (255, 255, 255)     # empty table


def test_reference_protocol_sets_position_before_angle_as_pymunk_does():
    """The reference start: body position set at angle 0, then the angle, turning about the CoG."""
    import pymunk

    from tutorial_lib.envs.pusht import BLOCK_COG, reference_start_state
    from tutorial_lib.envs.pusht_geometry import BAR_VERTICES

    checked = 0
    for seed in range(40):
        state = reference_start_state(np.random.default_rng(seed))
        rng = np.random.default_rng(seed)                   # the same draws, again
        agent = rng.integers(50, 450, size=2)
        block = rng.integers(100, 400, size=2)
        theta = rng.normal() * 2 * np.pi - np.pi
        body = pymunk.Body(1.0, pymunk.moment_for_poly(1.0, BAR_VERTICES))
        body.center_of_gravity = BLOCK_COG
        body.position = tuple(float(v) for v in block)      # position first (legacy order) ...
        body.angle = theta                                 # ... then the angle
        np.testing.assert_allclose(state[0:2], agent)
        if np.linalg.norm(state[4:6] - np.array(body.position)) < 1e-6:
            checked += 1                                  # untouched by the first physics step
            assert state[6] == pytest.approx(theta)
    assert checked >= 30, f"only {checked} of 40 starts matched pymunk's turn about the centre of gravity"


def test_reference_protocol_distribution():
    env = PushTEnv(reset_protocol="reference")
    book = PushTEnv()
    ys_ref = [env.reset(seed=s)[1]["block_pose"][1] for s in range(400)]
    ys_book = [book.reset(seed=s)[1]["block_pose"][1] for s in range(400)]
    # the reference's block starts about 45 px lower (y down) than the drawn point, on average
    assert 30 < np.mean(ys_ref) - np.mean(ys_book) < 60
    with pytest.raises(ValueError, match="reset_protocol"):
        PushTEnv(reset_protocol="gym")


def test_snapshot_keeps_the_last_action_and_restore_brings_it_back():
    env = make_env([100, 400, 380, 100, 0.0], render_mode="rgb_array", render_size=128)
    blank = env.snapshot()
    assert blank.last_action is None                                   # no step yet: nothing to draw
    env.step([100.0, 400.0])
    snap = env.snapshot()
    np.testing.assert_array_equal(snap.last_action, [100.0, 400.0])
    drawn = env.render()
    env.step([200.0, 300.0])
    np.testing.assert_array_equal(snap.last_action, [100.0, 400.0])  # later steps leave the snapshot alone
    env.restore(snap)
    np.testing.assert_array_equal(env.snapshot().last_action, [100.0, 400.0])
    np.testing.assert_array_equal(env.render(), drawn)               # the target cross is back where it was
    env.restore(blank)
    assert env.snapshot().last_action is None
    with pytest.raises(TypeError, match=r"^restore expects a PushTSnapshot from env\.snapshot\(\); got ndarray$"):
        env.restore(env.sim_state)


def test_restore_stores_the_state_as_float64():
    env = make_env([100, 400, 380, 100, 0.0])
    snap = env.snapshot()
    env.restore(type(snap)([int(v) for v in snap.sim_state], 3, None))
    assert env.sim_state.dtype == np.float64
    np.testing.assert_array_equal(env.sim_state, np.trunc(snap.sim_state))


def test_render_needs_rgb_array_mode_and_draws_the_target_only_if_asked():
    with pytest.raises(ValueError, match=r"^render\(\) needs PushTEnv\(render_mode='rgb_array'\)$"):
        make_env([100, 400, 380, 100, 0.0]).render()
    env = make_env([100, 400, 380, 100, 0.0], render_mode="rgb_array", render_size=128, render_action=False)
    env.step([100.0, 400.0])
    img = env.render()
    assert tuple(img[100, 25]) != (255, 0, 0)              # no red cross at the commanded target (100, 400)
    assert (img == np.array([255, 0, 0], np.uint8)).all(-1).sum() == 0


def test_reference_start_state_runs_exactly_one_physics_step():
    """One pymunk step from rest moves nothing, even where the agent overlaps the block (contacts push the
    bodies apart from the second step on); a start drawn with ``n_substeps`` > 1 would already be moved."""
    from tutorial_lib.envs.pusht import AGENT_RADIUS, BLOCK_COG, distance_to_block, reference_start_state

    for seed in (13, 21, 38):                                   # starts where the agent overlaps the block
        state = reference_start_state(np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        agent = rng.integers(50, 450, size=2).astype(np.float64)
        block = rng.integers(100, 400, size=2).astype(np.float64)
        theta = rng.normal() * 2 * np.pi - np.pi
        cog = np.array(BLOCK_COG)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        drawn = np.zeros(10)
        drawn[0:2], drawn[4:6], drawn[6] = agent, block + cog - rot @ cog, theta
        assert distance_to_block(agent, drawn[4:7]) < AGENT_RADIUS
        np.testing.assert_allclose(state, drawn, rtol=0, atol=1e-9)
        assert np.abs(simulate(drawn, agent, 0.0, n_substeps=2) - drawn).max() > 1e-3   # a second step moves it


def test_the_walls_frame_the_workspace_on_every_side_up_to_the_corners():
    """Four 50-px slabs outside the inner faces 7 and 504: every point of the frame around the workspace lies in a
    wall, corners included, and no point of the workspace does."""
    import pymunk

    from tutorial_lib.envs.pusht import _build_space, make_sim_state

    space, _, _ = _build_space(make_sim_state([256, 400, 256, 300, 0.0]), 0.0)
    ticks = np.concatenate([np.arange(-41.5, 555.0, 6.0), [7.5, 503.5]])         # none on a face
    for x in ticks:
        for y in ticks:
            in_wall = any(hit.shape.body is space.static_body
                          for hit in space.point_query((float(x), float(y)), 0.0, pymunk.ShapeFilter()))
            in_workspace = 7.0 < x < 504.0 and 7.0 < y < 504.0
            assert in_wall != in_workspace, (x, y)


def test_simulate_is_frictionless_unless_asked():
    from tutorial_lib.envs.pusht import make_sim_state

    default = explicit = rough = make_sim_state([200, 380, 256, 300, 0.3])
    target = np.array([330.0, 330.0])                  # the agent drives into the bar at a slant: it slides along it
    for _ in range(8):
        default, explicit = simulate(default, target), simulate(explicit, target, 0.0)
        rough = simulate(rough, target, 1.0)
    np.testing.assert_array_equal(default, explicit)
    assert np.abs(rough[4:6] - default[4:6]).max() > 10.0   # friction drags the block along: it matters here


def test_states_must_be_numbers_with_positions_in_the_workspace():
    env = PushTEnv()
    with pytest.raises(ValueError, match=r"^state must be 5 numbers \[agent_x, agent_y, block_x, block_y, "
                                         r"block_angle\]; got \['a', 1, 2, 3, 4\]$"):
        env.reset(options={"state": ["a", 1, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"^agent and block positions must lie in \[0, 512\]; "
                                         r"got agent \[100\.0, -1\.0\], block \[300\.0, 300\.0\]$"):
        env.reset(options={"state": [100, -1, 300, 300, 0.0]})
    obs, _ = env.reset(options={"state": [0, 512, 0, 512, -1.0]})    # the workspace is closed
    np.testing.assert_allclose(obs, [0, 512, 0, 512, 2 * np.pi - 1.0], rtol=1e-6)
    obs, _ = env.reset(options={"state": [100, 100, 300, 300, 1000.0]})   # the angle may be any finite number
    assert obs[4] == pytest.approx(1000.0 % (2 * np.pi), abs=1e-5)
    assert PushTEnv(render_mode="rgb_array").render().shape == (256, 256, 3)   # the default picture size


def test_spaces_cover_the_workspace_and_the_constructor_names_bad_arguments():
    state_env, keypoint_env = PushTEnv(), PushTEnv(obs_type="keypoints")
    for env in (state_env, keypoint_env):
        np.testing.assert_array_equal(env.action_space.low, [0.0, 0.0])
        np.testing.assert_array_equal(env.action_space.high, [512.0, 512.0])
    np.testing.assert_array_equal(state_env.observation_space.low, np.zeros(5, np.float32))
    np.testing.assert_array_equal(state_env.observation_space.high,
                                  np.array([512, 512, 512, 512, 2 * np.pi], np.float32))   # angle mod 2 pi
    np.testing.assert_array_equal(keypoint_env.observation_space.low, np.zeros(20, np.float32))
    np.testing.assert_array_equal(keypoint_env.observation_space.high, np.full(20, 512, np.float32))
    with pytest.raises(ValueError, match=r"^render_mode must be None or 'rgb_array'; got 'human'$"):
        PushTEnv(render_mode="human")
    with pytest.raises(ValueError, match=r"^contact_friction must be >= 0; got -0\.5$"):
        PushTEnv(contact_friction=-0.5)


def test_steps_use_the_envs_contact_friction():
    rough = make_env([200, 380, 256, 300, 0.3], contact_friction=1.0)
    state = rough.sim_state
    target = np.array([330.0, 330.0])                  # a slanted push along the bar, where friction matters
    for _ in range(3):
        rough.step(target)
        state = simulate(state, target, 1.0)
    np.testing.assert_array_equal(rough.sim_state, state)
    assert np.abs(state[4:6] - simulate(simulate(simulate(make_env([200, 380, 256, 300, 0.3]).sim_state, target),
                                                 target), target)[4:6]).max() > 1.0


def test_book_reset_draws_block_then_agent_from_the_seed_and_redraws_bad_starts():
    """The book's start: block position (integers in [100, 400)) and angle (uniform in [-pi, pi)) until the T lies
    inside the walls, then agent positions (integers in [50, 450)) until the agent clears the block; all from
    gymnasium's generator of the seed (so the draws can be repeated here)."""
    from gymnasium.utils import seeding

    from tutorial_lib.envs.pusht import AGENT_RADIUS, distance_to_block

    env, angles = PushTEnv(), []
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        rng, _ = seeding.np_random(seed)
        while True:
            pose = np.array([*rng.integers(100, 400, size=2), rng.uniform(-np.pi, np.pi)], dtype=np.float64)
            if tee_polygons(pose).min() >= 7.0 and tee_polygons(pose).max() <= 504.0:
                break
        while True:
            agent = rng.integers(50, 450, size=2).astype(np.float64)
            if distance_to_block(agent, pose) > AGENT_RADIUS:
                break
        np.testing.assert_array_equal(info["block_pose"], pose)
        np.testing.assert_array_equal(env.agent_position, agent)
        angles.append(pose[2])
    assert min(angles) < -2.0 and max(angles) > 2.0            # the whole circle is drawn


def test_a_non_numeric_action_is_a_clear_error():
    env = make_env([100, 100, 300, 300, 0.0])
    with pytest.raises(ValueError, match=r"^action must be a target position \[x, y\]; got \['left', 3\.0\]$"):
        env.step(["left", 3.0])


def test_distance_to_block_is_zero_inside_and_euclidean_outside():
    from tutorial_lib.envs.pusht import distance_to_block

    # at pose (0, 0, 0) the bar is [-60, 60] x [0, 30] and the stem [-15, 15] x [30, 120]
    cases = [((0, 15), 0.0), ((0, 100), 0.0), ((59.999, 0.001), 0.0), ((0, 0), 0.0),     # inside, on an edge
             ((-70, 15), 10.0), ((0, -7), 7.0), ((200, 15), 140.0), ((0, 125), 5.0), ((30, 50), 15.0),
             ((63, 34), 5.0), ((-18, 124), 5.0), ((-63, -4), 5.0)]                      # 3-4-5 off corners
    pose = np.array([256.0, 256.0, np.pi / 4])
    rot = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4)], [np.sin(np.pi / 4), np.cos(np.pi / 4)]])
    for point, expected in cases:
        assert distance_to_block(np.array(point, np.float64), np.zeros(3)) == pytest.approx(expected, abs=1e-9)
        moved = pose[:2] + rot @ np.array(point, np.float64)                  # the same point on a moved T
        assert distance_to_block(moved, pose) == pytest.approx(expected, abs=1e-6)


def test_info_holds_the_goal_pose_and_the_agent_velocity():
    env = make_env([100, 100, 300, 300, 0.0])
    _, _, _, _, info = env.step([200.0, 150.0])
    np.testing.assert_array_equal(info["goal_pose"], GOAL_POSE)
    np.testing.assert_array_equal(info["agent_velocity"], env.sim_state[2:4])
    assert np.abs(info["agent_velocity"]).min() > 1.0                        # it is moving towards the target
