"""Smoothness of executed motion: jerk and direction reversals, by hand; the recorded Push-T actions."""

import numpy as np
import pytest

from tutorial_lib.experiments.smoothness import episode_stats, motion_stats


def test_motion_stats_by_hand():
    # a straight line at constant speed: no jerk, no reversal
    line = np.stack([np.arange(6.0), np.zeros(6)], axis=1)
    assert motion_stats(line, 0.5) == (0.0, 0.0)
    # x = 0, 1, 0, 1, 0: third differences -4, +4 ... squared 16; every one of the 3 turns reverses
    zigzag = np.array([[0.0, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    jerk, rev = motion_stats(zigzag, 0.5)
    assert jerk == pytest.approx(16.0)
    assert rev == pytest.approx(100 * 3 / 4)
    # the same turns made by steps shorter than min_step count as standing still
    assert motion_stats(zigzag * 0.1, 0.5)[1] == 0.0
    # a quadratic path has a constant second difference and no jerk; a cubic one has a constant jerk of 6
    t = np.arange(8.0)
    assert motion_stats(np.stack([t**2, 0 * t], 1), 0.1)[0] == pytest.approx(0.0)
    assert motion_stats(np.stack([t**3, 0 * t], 1), 0.1)[0] == pytest.approx(36.0)
    # a right-angle turn is not a reversal
    corner = np.array([[0.0, 0], [1, 0], [1, 1]])
    assert motion_stats(corner, 0.5)[1] == 0.0
    assert np.isnan(motion_stats(corner, 0.5)[0])     # fewer than 4 points: no third difference


def test_motion_stats_checks_its_input():
    with pytest.raises(ValueError, match=r"\(L, 2\)"):
        motion_stats(np.zeros((5, 3)), 0.1)


def test_episode_stats_averages_over_episodes_and_skips_short_ones():
    line = np.stack([np.arange(6.0), np.zeros(6)], axis=1)
    zigzag = np.array([[0.0, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    short = np.array([[0.0, 0], [1, 0]])
    out = episode_stats([line, zigzag, short], 0.5)
    assert out["n_episodes"] == 3
    assert out["jerk"] == pytest.approx(8.0)                   # (0 + 16) / 2: the short episode has none
    assert out["reversals"] == pytest.approx(75.0 / 3)
    assert out["ci95"]["jerk"] > 0


def test_pusht_evaluate_records_the_executed_actions():
    from tutorial_lib.agents.pusht_policy import load_policy
    from tutorial_lib.agents.pusht_rollout import evaluate, rollout

    policy = load_policy("pusht-bc")
    ev = evaluate(policy, [0, 1], max_steps=20, n_timing=1, record_actions=True)
    assert [a.shape for a in ev["actions"]] == [(int(s), 2) for s in ev["steps"]]
    assert all(a.dtype == np.float64 for a in ev["actions"])
    # BC is deterministic: the first episode's actions are those ``rollout`` executes, queue by queue
    one = rollout(policy, 0, max_steps=20, record_chunks=True)
    cfg = policy.cfg
    executed = np.concatenate([c[cfg.n_obs_steps - 1: cfg.n_obs_steps - 1 + cfg.n_action_steps] for _, c in one["chunks"]])
    # (a batch of 2 and a batch of 1 round differently: agreement to 0.01 px)
    np.testing.assert_allclose(ev["actions"][0], np.clip(executed[: one["steps"]], 0, 512), atol=1e-2)
    assert "actions" not in evaluate(policy, [0], max_steps=5, n_timing=1)
