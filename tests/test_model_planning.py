"""Planning through a learned model (Chapter 2): the planning models, the cost, execution and the closed loop."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from tutorial_lib.agents.trajectories import LimitsNormalizer
from tutorial_lib.experiments.model_planning import (HOLD, LearnedModel, ModelMPPIPolicy, TrueModel, execute_controls,
                                                     plan_cost)


def _env_positions(start, controls, hold):
    """The gymnasium env's positions after each step when ``controls`` are held ``hold`` steps each."""
    env = gym.make("tutorial_lib/PointMaze-UMaze-v0")
    env.reset(options={"start": np.asarray(start), "goal": np.array([3.0, 1.0])})
    out = []
    for t in range(len(controls) * hold):
        obs, *_ = env.step(controls[t // hold])
        out.append(obs[:2])
    env.close()
    return np.array(out)


def test_true_model_rolls_out_the_environment_exactly():
    rng = np.random.default_rng(0)
    controls = rng.uniform(-1, 1, size=(2, 12, 2))
    start = np.array([1.0, 1.0])
    path = TrueModel().rollout(np.r_[start, 0.0, 0.0], controls, hold=5)
    assert path.shape == (2, 60, 2)
    for k in range(2):
        np.testing.assert_allclose(path[k], _env_positions(start, controls[k], 5), atol=1e-9)
    # a moving start: the velocity is part of the state
    moving = TrueModel().rollout(np.array([1.0, 1.0, 1.0, 0.0]), np.zeros((1, 1, 2)), hold=1)[0, 0]
    still = TrueModel().rollout(np.array([1.0, 1.0, 0.0, 0.0]), np.zeros((1, 1, 2)), hold=1)[0, 0]
    assert moving[0] > still[0] + 0.005 and moving[1] == pytest.approx(still[1])


class _Constant(torch.nn.Module):
    """A stub one-step network whose scaled state difference is a constant ``(4,)``."""

    def __init__(self, value):
        super().__init__()
        self.value = torch.as_tensor(value, dtype=torch.float32)

    def forward(self, x):
        return self.value.expand(len(x), -1)


def test_learned_model_integrates_its_network_in_raw_units():
    # normaliser: actions in [-1, 1], positions in [0, 4], velocities in [-2, 2]; normalised = 2 (x - lo) / (hi - lo) - 1
    norm = LimitsNormalizer([-1, -1, 0, 0, -2, -2], [1, 1, 4, 4, 2, 2])
    zero = LearnedModel(_Constant([0, 0, 0, 0]), torch.ones(4), norm)
    path = zero.rollout(np.array([1.0, 3.0, 0.0, 0.0]), np.zeros((3, 5, 2)), hold=2)
    assert path.shape == (3, 10, 2) and path.dtype == np.float64
    np.testing.assert_allclose(path, np.broadcast_to([1.0, 3.0], (3, 10, 2)), atol=1e-6)
    # a step of 0.01 normalised units in x is 0.02 raw cells (the range 4 over the normalised range 2); delta_scale 0.5
    drift = LearnedModel(_Constant([0.02, 0, 0, 0]), torch.full((4,), 0.5), norm)
    path = drift.rollout(np.array([1.0, 3.0, 0.0, 0.0]), np.zeros((1, 2, 2)), hold=3)[0]
    np.testing.assert_allclose(path[:, 0], 1.0 + 0.02 * np.arange(1, 7), atol=1e-5)
    np.testing.assert_allclose(path[:, 1], 3.0, atol=1e-6)


def test_learned_model_feeds_the_held_actions():
    seen = []

    class Record(torch.nn.Module):
        def forward(self, x):
            seen.append(x[:, 4:6].clone())
            return torch.zeros(len(x), 4)

    norm = LimitsNormalizer([-2, -2, 0, 0, -2, -2], [2, 2, 4, 4, 2, 2])
    controls = np.array([[[0.5, -1.0], [1.0, 0.0]]])   # raw actions; clipped to [-1, 1], then normalised (range 4)
    LearnedModel(Record(), torch.ones(4), norm).rollout(np.zeros(4) + 1, controls, hold=2)
    assert len(seen) == 4
    np.testing.assert_allclose(torch.cat(seen).numpy(), [[0.25, -0.5], [0.25, -0.5], [0.5, 0.0], [0.5, 0.0]])


def test_plan_cost_by_hand():
    path = np.array([[[0.0, 0.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 0.0]]])   # (K=2, H=2, 2), goal at the origin
    controls = np.array([[[1.0, 0.0]], [[0.0, 0.0]]])                       # (K=2, T=1, 2)
    cost = plan_cost(path, [0.0, 0.0], controls, control_weight=0.5, terminal_weight=2.0)
    # plan 0: mean distance (0 + 5) / 2 = 2.5, terminal 2 * 5 = 10, effort 0.5 * 1; plan 1: 0.5 + 0 + 0
    np.testing.assert_allclose(cost.numpy(), [13.0, 0.5])


def test_execute_controls_holds_each_knot_and_then_stops_pushing():
    rng = np.random.default_rng(1)
    controls = rng.uniform(-1, 1, size=(4, 2))
    start, goal = np.array([1.0, 1.0]), np.array([3.0, 1.0])
    run = execute_controls(start, goal, controls, hold=HOLD)
    assert run["positions"].shape == (300, 2)
    expected = TrueModel().rollout(np.r_[start, 0.0, 0.0], np.concatenate([controls, np.zeros((26, 2))])[None])[0]
    np.testing.assert_allclose(run["positions"], expected, atol=1e-9)
    in_goal = np.linalg.norm(expected - goal, axis=1) <= 0.5
    assert run["return"] == in_goal.sum()
    assert run["steps_to_goal"] == (int(np.argmax(in_goal)) + 1 if in_goal.any() else None)


def test_closed_loop_replans_from_the_observed_state_and_the_true_model_has_no_gap():
    policy = ModelMPPIPolicy(TrueModel(), replan_every=100, replan_iterations=2)
    calls = []
    original = policy.model.rollout

    def spy(state, controls, hold=HOLD):
        calls.append(np.array(state[:2]))
        return original(state, controls, hold)

    policy.model.rollout = spy
    env = gym.make("tutorial_lib/PointMaze-UMaze-v0")
    obs, info = env.reset(options={"start": np.array([1.0, 1.0]), "goal": np.array([3.0, 1.0])})
    policy.reset()
    observed = [obs]
    for _ in range(201):
        obs, *_ = env.step(policy(obs, info["goal"]))
        observed.append(obs)
    env.close()
    # plans at steps 0, 100 and 200; each after the first checks where the previous plan said the ball would be
    assert len(policy.gaps) == 2
    np.testing.assert_allclose(policy.gaps, 0.0, atol=1e-6)   # the policy hands the env float32 actions
    assert np.allclose(calls[-1], observed[200][:2])      # the last plan started from the observed state
    assert not np.allclose(observed[200][:2], observed[0][:2])


def test_closed_loop_checks_its_arguments():
    with pytest.raises(ValueError, match="replan_every"):
        ModelMPPIPolicy(TrueModel(), replan_every=0)


def test_closed_loop_stops_pushing_after_the_plans_last_knot():
    from tutorial_lib.experiments.model_planning import KNOTS

    policy = ModelMPPIPolicy(TrueModel(), replan_every=KNOTS * HOLD + 20, replan_iterations=1)
    policy.reset()
    policy.controls, policy.predicted = np.full((KNOTS, 2), 0.5), np.zeros((KNOTS * HOLD, 2))
    policy.t = 1                       # no replan at this step; the plan was made at step 0
    actions = [policy(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 1.0])) for _ in range(KNOTS * HOLD + 5)]
    np.testing.assert_array_equal(actions[KNOTS * HOLD - 2], [0.5, 0.5])   # t = 299: the last knot's last step
    np.testing.assert_array_equal(actions[KNOTS * HOLD - 1], [0.0, 0.0])   # t = 300: past the plan


def test_plan_tracker_follows_a_feasible_path_and_its_pd_law_by_hand():
    from tutorial_lib.experiments.model_planning_noise import PlanTracker, track_plan

    # the true model's path of some controls (a push along the corridor, then up) is followed with a lag of a few
    # hundredths of a cell, with or without process noise, and ends where it says
    controls = np.concatenate([np.tile([[0.0, 0.6]], (15, 1)), np.tile([[0.5, -0.3]], (15, 1))])
    start = np.array([1.0, 1.0])
    path = TrueModel().rollout(np.r_[start, 0.0, 0.0], controls[None])[0]
    assert np.ptp(path[:, 1]) > 1.0
    for noise in (0.0, 0.03):
        run = track_plan(start, np.array([3.0, 1.0]), path, dynamics_noise=noise, seed=1)
        gap = np.linalg.norm(run["positions"] - path, axis=1)
        assert gap.max() < 0.2 and gap[-1] < 0.05, (noise, gap.max(), gap[-1])
    # the law: a = clip(kp (p_hat_{t+1} - p_t) + kd (v_hat_{t+1} - v_t)), v_hat the plan's differences over DT
    tracker = PlanTracker([0.0, 0.0], [[0.01, 0.0], [0.03, 0.01]], kp=2.0, kd=0.5)
    np.testing.assert_allclose(tracker(np.array([0.0, 0.0, 0.0, 0.0]), None), [2 * 0.01 + 0.5 * 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(tracker(np.array([0.01, 0.0, 1.0, 0.0]), None),
                               [2 * 0.02 + 0.5 * (2.0 - 1.0), 2 * 0.01 + 0.5 * 1.0], rtol=1e-6)
    # past the end it holds the last point at rest; big errors saturate at the action limit
    np.testing.assert_allclose(tracker(np.array([0.03, 0.01, 1.0, 0.0]), None), [-0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(tracker(np.array([5.0, 0.01, 0.0, 0.0]), None), [-1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"planned path \(H, 2\)"):
        PlanTracker([0.0, 0.0], np.zeros((3, 4)))


def test_noise_sweep_separates_noise_from_an_infeasible_plan():
    from tutorial_lib.experiments.model_planning_noise import noise_sweep

    # a "learned" model that ignores the walls: it plans straight through the U's inner wall to the goal
    class _Ghost:
        def rollout(self, state, controls, hold=HOLD):
            u = np.clip(np.asarray(controls, dtype=np.float64), -1, 1).repeat(hold, axis=1)
            return state[:2] + np.cumsum(np.cumsum(u * 0.238, axis=1) * 0.01, axis=1)

    pairs = np.array([[[1.0, 1.0], [3.0, 1.0]]])     # U-Maze: across the inner wall, the route goes around it
    r = noise_sweep(pairs, 0.0, 300.0, sweep={0.0: "ghost", 0.1: "ghost"}, models={0.0: _Ghost(), 0.1: _Ghost()},
                    n_iterations=8, n_samples=64, log=lambda *_: None)
    assert r["sigma"] == [0.0, 0.1] and r["n_pairs"] == 1
    calm, noisy = r["by_sigma"]["0"], r["by_sigma"]["0.1"]
    # the true model's plan: no gap open loop without noise; with noise, open loop drifts and tracking removes it
    assert calm["true_mppi"]["open_loop"]["gap_end"] < 1e-9
    assert noisy["true_mppi"]["open_loop"]["gap_end"] > noisy["true_mppi"]["tracked"]["gap_end"]
    assert noisy["true_mppi"]["tracked"]["gap_end"] < 0.2 and noisy["true_mppi"]["tracked"]["success"] == 1.0
    # the wall-blind plan stays far from where the ball can go, tracked or not, noise or not
    for e in (calm, noisy):
        assert e["learned_mppi"]["tracked"]["gap_end"] > 0.5 and e["learned_mppi"]["tracked"]["success"] == 0.0
        assert set(e) == {"learned_mppi", "true_mppi", "diffuser"}
        assert {"success", "normalized_score", "gap_end", "gap_mean", "ci95"} <= set(e["diffuser"])
