"""Trajectory windows of the maze data: the normaliser, the splits, the window starts and the sampling (edges that
mutation testing found untested; the main behaviour is tested in test_diffuser.py)."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.trajectories import (LimitsNormalizer, TrajectoryWindows, make_transitions, split_stream,
                                              window_starts)
from tutorial_lib.envs.maze_data import generate_dataset, split_at_arrivals, split_at_goal_exits
from tutorial_lib.envs.maze_grid import MazeGrid


@pytest.fixture(scope="module")
def data():
    return generate_dataset("umaze", 3_000, seed=5)


def test_split_stream_default_and_each_split(data):
    n = len(data["observations"])
    goal = np.asarray(MazeGrid.from_layout("umaze").goal_cell, dtype=np.float64)
    exits = split_at_goal_exits(data["observations"], goal)
    assert len(exits) > 1
    np.testing.assert_array_equal(split_stream(data), exits)                          # the default: goal exits
    np.testing.assert_array_equal(split_stream(data, "goal_exits"), exits)
    arrivals = split_stream(data, "arrivals")
    np.testing.assert_array_equal(arrivals, split_at_arrivals(data, include_last=True))
    assert arrivals[-1, 1] == n and arrivals[0, 0] == 0                               # the unfinished last kept
    whole = split_stream(data, "none")
    assert whole.dtype == np.int64 and whole.tolist() == [[0, n]]
    with pytest.raises(ValueError, match=r"unknown split 'all'; choose one of \('goal_exits', 'arrivals', 'none'\)"):
        split_stream(data, "all")


def test_window_starts_edges():
    assert window_starts([[0, 3], [5, 7]], 1).tolist() == [0, 1, 2, 5, 6]            # horizon 1: every step
    got = window_starts(np.array([[0.0, 4.0]]), 2)                                     # float rows are cast
    assert got.dtype == np.int64 and got.tolist() == [0, 1, 2]
    none = window_starts([[0, 2]], 5)
    assert none.dtype == np.int64 and none.shape == (0,)
    with pytest.raises(ValueError, match=r"horizon must be >= 1, got 0"):
        window_starts([[0, 3]], 0)


def test_make_transitions_checks_each_shape():
    a, o = np.zeros((4, 2)), np.zeros((4, 4))
    assert make_transitions({"actions": a, "observations": o}).shape == (4, 6)
    for bad in ({"actions": np.zeros((4, 3)), "observations": o},          # only the actions are wrong
                {"actions": a, "observations": np.zeros((4, 5))},          # only the observations
                {"actions": a, "observations": np.zeros((5, 4))}):         # only the lengths
        with pytest.raises(ValueError, match=r"expected actions \(N, 2\) and observations \(N, 4\), got"):
            make_transitions(bad)


def test_fit_is_done_in_float32():
    """A column constant in float32 (but not in float64) is a constant column: hi = lo + 1, no error."""
    norm = LimitsNormalizer.fit(np.array([[1.0, 0.0], [1.0 + 1e-12, 2.0]]))
    assert norm.hi.tolist() == [2.0, 2.0] and norm.lo.tolist() == [1.0, 0.0]


def test_windows_are_float32_and_the_error_names_the_longest_path():
    windows = TrajectoryWindows(np.random.default_rng(0).normal(size=(10, 6)), [[0, 10]], horizon=3)
    assert windows.data.dtype == torch.float32 and windows[0].dtype == torch.float32
    msg = ("no path is at least 5 steps long (horizon 5, stride 1); longest: 3 steps; "
           "use a shorter horizon, more data, or split='none'")
    with pytest.raises(ValueError, match="^" + msg.replace("(", r"\(").replace(")", r"\)") + "$"):
        TrajectoryWindows(np.zeros((10, 6)), [[0, 3], [3, 5]], horizon=5)
    with pytest.raises(ValueError, match="longest: 0 steps"):
        TrajectoryWindows(np.zeros((10, 6)), np.zeros((0, 2), dtype=np.int64), horizon=5)


def test_from_maze_data_passes_split_normalizer_and_stride(data):
    n = len(data["observations"])
    norm = LimitsNormalizer(-10 * np.ones(6), 10 * np.ones(6))
    windows = TrajectoryWindows.from_maze_data(data, horizon=4, split="none", normalizer=norm, stride=3)
    assert windows.normalizer is norm and windows.stride == 3
    assert len(windows) == n - (4 - 1) * 3                                            # one path: the whole stream
    np.testing.assert_allclose(windows[0].numpy(), make_transitions(data)[[0, 3, 6, 9]] / 10, rtol=0, atol=1e-6)


def test_sample_batch_draws_uniform_indices_from_the_generator():
    windows = TrajectoryWindows(np.arange(60, dtype=np.float64).reshape(10, 6), [[0, 10]], horizon=3)
    torch.manual_seed(0)
    batch = windows.sample_batch(50, torch.Generator().manual_seed(2))
    k = torch.randint(0, len(windows), (50,), generator=torch.Generator().manual_seed(2))
    assert (k == 0).any()                                                             # window 0 can be drawn
    torch.testing.assert_close(batch, torch.stack([windows[int(i)] for i in k]), rtol=0, atol=0)
    torch.manual_seed(1)
    torch.testing.assert_close(windows.sample_batch(50, torch.Generator().manual_seed(2)), batch, rtol=0, atol=0)
    assert windows.sample_batch(4).shape == (4, 3, 6)                                  # the global RNG, no generator


def test_normalizer_dtypes_and_fit_errors():
    """lo, hi are float32; arrays come back float32, tensors keep their own dtype (float16 and float64 too)."""
    norm = LimitsNormalizer(np.zeros(2), np.full(2, 4.0))
    assert norm.lo.dtype == torch.float32 and norm.hi.dtype == torch.float32
    assert norm.normalize(np.full((3, 2), 2.0)).dtype == np.float32
    for dtype in (torch.float16, torch.float64):
        out = norm.normalize(torch.full((3, 2), 2.0, dtype=dtype))
        assert out.dtype == dtype and (out == 0).all()
        assert norm.unnormalize(torch.zeros(3, 2, dtype=dtype)).dtype == dtype
    assert LimitsNormalizer.fit(np.ones((1, 2))).hi.tolist() == [2.0, 2.0]             # one row is enough
    with pytest.raises(ValueError, match=r"fit needs data of shape \(N, D\) with N >= 1, got \(0, 3\)"):
        LimitsNormalizer.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        LimitsNormalizer.fit(np.zeros(3))
