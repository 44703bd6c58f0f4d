"""Goal-conditioned behaviour cloning in the maze: shapes, input scaling, errors, and that it learns."""

import numpy as np
import pytest
import torch

from tutorial_lib.envs.maze_data import generate_dataset
from tutorial_lib.agents.maze_bc import (BCMazePolicy, GoalConditionedBC, MazeBCConfig, build_maze_bc, input_range,
                                  maze_bc_loss)
from tutorial_lib.core.training import TrainConfig, train


def test_input_range_is_the_maze_and_the_speed_limit():
    lo, hi = input_range("medium")
    np.testing.assert_allclose(lo, [-0.5, -0.5, -5, -5, -0.5, -0.5])
    np.testing.assert_allclose(hi, [7.5, 7.5, 5, 5, 7.5, 7.5])
    with pytest.raises(ValueError, match="spiral"):
        input_range("spiral")


def test_shapes_range_and_errors():
    torch.manual_seed(0)
    net = build_maze_bc(MazeBCConfig(layout="umaze", hidden=32, depth=2))
    a = net(torch.randn(7, 4), torch.randn(7, 2))
    assert a.shape == (7, 2) and (a.abs() < 1).all()
    with pytest.raises(ValueError, match=r"need obs \(B, 4\) and goal \(B, 2\)"):
        net(torch.randn(7, 4), torch.randn(7, 3))
    action = BCMazePolicy(net, device="cpu")(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 3.0]))
    assert action.shape == (2,) and action.dtype == np.float32


def test_bc_learns_the_expert_actions():
    data = generate_dataset("umaze", 20_000, seed=2)
    rows = torch.as_tensor(np.concatenate([data["observations"], data["goals"], data["actions"]], 1))
    torch.manual_seed(0)
    net = GoalConditionedBC(*input_range("umaze"), hidden=64, depth=2)
    before = maze_bc_loss(net, rows).item()

    def sample(batch_size, generator):
        return rows[torch.randint(0, len(rows), (batch_size,), generator=generator)]

    res = train(net, maze_bc_loss, sample, TrainConfig(n_steps=1500, batch_size=256, lr=3e-3, ema_decay=0.9, seed=0),
                name="test-maze-bc", progress=False, device="cpu")
    after = maze_bc_loss(res.model, rows).item()
    # the actions' own variance is the loss of predicting their mean; the net must do far better
    assert after < 0.5 * rows[:, 6:].var(0).sum().item() / 2 and after < 0.5 * before, (before, after)
