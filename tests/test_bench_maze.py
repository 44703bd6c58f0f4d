"""The maze benchmark: a quick run prints progress and one JSON object with the five methods per maze."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tutorial_lib.experiments.maze_eval import METHODS, summarize
from tutorial_lib.envs.maze_expert import EvalResult


def test_maze_bench_quick():
    out = subprocess.run([sys.executable, "-m", "tutorial_lib.bench", "maze", "--quick"],
                         capture_output=True, text=True, check=True, timeout=900).stdout
    lines = out.strip().splitlines()
    assert any(line.startswith("[bench]") for line in lines[:-1]), "progress lines expected before the JSON"
    result = json.loads(lines[-1])
    assert result["suite"] == "maze" and result["quick"] is True
    for layout in ("umaze", "medium", "large"):
        res = result[layout]
        assert res["n_pairs"] == 2
        for method in METHODS:
            assert 0.0 <= res[method]["success"] <= 1.0, (layout, method)
            assert set(res[method]) == {"success", "return", "normalized_score", "steps_to_goal", "n_episodes", "ci95"}
            low, high = res[method]["ci95"]["success"]
            assert low <= res[method]["success"] <= high and res[method]["n_episodes"] == 2
        # the references of the normalized score are what they say they are
        assert res["expert"]["normalized_score"] == 100.0 and res["random"]["normalized_score"] == 0.0
        assert res["expert"]["success"] == 1.0
        assert res["plan_ms"] > 0 and 0 < res["forward_ms"] < res["plan_ms"]
        assert all(0 <= i < 2 for i in res["diffuser_failed_pairs"])
        assert res["beyond_horizon"]["plan_steps"] > 0 and 0 <= res["beyond_horizon"]["n_pairs"] <= 2
        single = res["single_task"]
        for method in ("expert", "diffuser"):
            assert single[method]["n_episodes"] == 2 and "d4rl_normalized_score" in single[method]
            assert "d4rl_normalized_score" in single[method]["ci95"]


def test_summarize_normalizes_by_the_same_pairs():
    def result(returns):
        returns = np.asarray(returns, dtype=float)
        steps = np.where(returns > 0, 300 - returns, np.nan)
        return EvalResult(returns, returns > 0, steps)

    out = summarize({"random": result([0, 20]), "expert": result([200, 220]), "x": result([310 - 100, 0])})
    assert out["x"]["normalized_score"] == pytest.approx(100 * (105 - 10) / (210 - 10), abs=0.1)
    assert out["x"]["success"] == 0.5 and out["random"]["normalized_score"] == 0.0


def test_conditioning_bench_quick():
    out = subprocess.run([sys.executable, "-m", "tutorial_lib.bench", "conditioning", "--quick"],
                         capture_output=True, text=True, check=True, timeout=900).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["suite"] == "conditioning" and result["quick"] is True
    guidance = result["guidance"]["scales"]
    assert set(guidance) == {"0.0", "100.0", "300.0", "1000.0", "3000.0"}
    for row in guidance.values():
        assert 0 <= row["bonus_visited"] <= 1 and 0 <= row["success"] <= 1 and row["bonus_steps"] >= 0
        low, high = row["ci95"]["success"]
        assert low <= row["success"] <= high and row["n_episodes"] == 2
    for row in result["classifier_free"]["weights"].values():
        assert 0 <= row["success"] <= 1 and row["end_error"] >= 0 and row["diversity"] >= 0
    for case in ("without", "with"):
        row = result["inpainting"][case]
        assert 0 <= row["both"] <= min(row["via_passed"], row["success"])


def test_single_task_protocol_is_d4rls():
    from tutorial_lib.envs.maze_expert import d4rl_normalized_score, make_single_task_starts
    from tutorial_lib.envs.maze_grid import MazeGrid

    for layout in ("umaze", "medium", "large"):
        pairs, velocities = make_single_task_starts(layout, 50, seed=0)
        goal_cell = np.array(MazeGrid.from_layout(layout).goal_cell, dtype=float)
        assert (pairs[:, 1] == goal_cell).all(), "every goal is the G cell's centre"
        assert (np.abs(pairs[:, 0] - np.round(pairs[:, 0])) <= 0.1).all(), "starts: a cell centre + U(-0.1, 0.1)"
        assert not (np.round(pairs[:, 0]) == goal_cell).all(axis=1).any(), "never start in G's cell"
        assert velocities.shape == (50, 2) and 0.05 < velocities.std() < 0.15
    # D4RL's reference returns are the 0 and the 100 of the score
    assert d4rl_normalized_score("medium", 13.13) == pytest.approx(0.0)
    assert d4rl_normalized_score("large", 273.99) == pytest.approx(100.0)


def test_maze_reset_takes_a_start_velocity():
    import gymnasium as gym

    import tutorial_lib.envs  # noqa: F401

    env = gym.make("tutorial_lib/PointMaze-UMaze-v0")
    obs, _ = env.reset(seed=0, options={"start": [3.0, 1.0], "goal": [1.0, 1.0], "velocity": [0.1, -0.2]})
    np.testing.assert_allclose(obs[2:], [0.1, -0.2], rtol=1e-6)
    with pytest.raises(ValueError, match="velocity"):
        env.reset(options={"velocity": [9.0, 0.0]})
