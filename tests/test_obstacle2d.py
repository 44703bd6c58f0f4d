"""The obstacle task: seeded two-way demonstrations, collision geometry, closed-loop rollouts."""

import pytest
import torch

from tutorial_lib.envs.obstacle2d import (ObstacleTask, demonstration_chunks, expert_demonstrations, passing_side,
                                          rollout, sample_start_states, segment_hits_disc)

TASK = ObstacleTask()


def test_demonstrations_repeat_by_seed_and_differ_across_seeds():
    a, b, c = expert_demonstrations(10, seed=3), expert_demonstrations(10, seed=3), expert_demonstrations(10, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a["states"], b["states"]))
    assert torch.equal(a["side"], b["side"])
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a["states"], c["states"]))


def test_demonstrations_are_bimodal_safe_and_successful():
    demos = expert_demonstrations(50, seed=0)
    left = (demos["side"] < 0).float().mean().item()
    assert 0.3 < left < 0.7, f"both sides should be common, left share {left}"
    # the recorded side is where the path really passes
    assert torch.equal(passing_side(demos["states"]), demos["side"])
    goal = torch.tensor(TASK.goal)
    for states, actions in zip(demos["states"], demos["actions"]):
        assert not segment_hits_disc(states[:-1], states[1:], TASK.obstacle, TASK.obstacle_radius).any()
        assert (states[-1] - goal).norm() < TASK.goal_radius
        assert (actions.norm(dim=1) <= TASK.max_step + 1e-6).all()
        assert torch.allclose(states[0] + actions.cumsum(0), states[1:], atol=1e-5)
    # the mean first action of the two groups points opposite ways sideways
    first = torch.stack([a[0] for a in demos["actions"]])
    assert first[demos["side"] < 0, 0].mean() < -0.03 and first[demos["side"] > 0, 0].mean() > 0.03


def test_segment_test_sees_a_segment_crossing_the_disc_between_its_endpoints():
    p, q = torch.tensor([[-1.0, 0.0], [-1.0, 0.5], [0.2, -0.2]]), torch.tensor([[1.0, 0.0], [1.0, 0.5], [0.3, -0.2]])
    assert segment_hits_disc(p, q, (0.0, 0.0), 0.35).tolist() == [True, False, True]
    # a segment pointing at the disc but stopping short does not hit it
    assert not segment_hits_disc(torch.tensor([[0.0, -0.9]]), torch.tensor([[0.0, -0.4]]), (0, 0), 0.35).item()


def test_start_states_lie_in_the_start_box_and_repeat():
    s = sample_start_states(200, seed=1)
    assert torch.equal(s, sample_start_states(200, seed=1))
    assert (s[:, 0] >= TASK.start_x[0]).all() and (s[:, 0] <= TASK.start_x[1]).all()
    assert (s[:, 1] >= TASK.start_y[0]).all() and (s[:, 1] <= TASK.start_y[1]).all()


def test_rollout_straight_up_collides_and_going_around_succeeds():
    starts = torch.tensor([[0.0, -0.85], [0.1, -0.85]])
    up = rollout(lambda s: torch.tensor([0.0, 1.0]).expand(len(s), 1, 2), starts)
    assert up["collided"].all() and not up["success"].any()
    # actions longer than max_step are shortened: the first step moves exactly max_step
    assert torch.allclose((up["paths"][:, 1] - up["paths"][:, 0]).norm(dim=1), torch.full((2,), TASK.max_step))

    def around(s):
        target = torch.where(s[:, 1:2] < -0.05, torch.tensor([0.6, 0.0]), torch.tensor(TASK.goal))
        return (target - s)[:, None, :]

    out = rollout(around, starts)
    assert out["success"].all() and not out["collided"].any()
    assert (passing_side(out["paths"]) == 1).all()
    # the episode stops at the goal: the path stays put afterwards
    k = out["steps"][0]
    assert torch.equal(out["paths"][0, k], out["paths"][0, -1])


def test_chunks_are_padded_with_zero_actions():
    demos = expert_demonstrations(3, seed=0)
    obs, chunks = demonstration_chunks(demos, action_horizon=5)
    n = sum(len(a) for a in demos["actions"])
    assert obs.shape == (n, 2) and chunks.shape == (n, 5, 2)
    assert torch.equal(chunks[0], demos["actions"][0][:5])
    last = len(demos["actions"][0]) - 1
    assert torch.equal(chunks[last, 0], demos["actions"][0][-1]) and (chunks[last, 1:] == 0).all()


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match=r"starts must have shape \(B, 2\)"):
        rollout(lambda s: s[:, None], torch.zeros(3))
    with pytest.raises(ValueError, match=r"policy must return actions of shape \(2, H, 2\)"):
        rollout(lambda s: s, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_demos must be >= 1"):
        expert_demonstrations(0)
    with pytest.raises(ValueError, match="n_action_steps must lie in"):
        rollout(lambda s: torch.zeros(len(s), 2, 2), torch.zeros(1, 2), n_action_steps=3)


def test_plot_draws_every_path_coloured_by_success():
    import matplotlib.pyplot as plt

    from tutorial_lib.plotting import COLORS, plot_obstacle_task

    demos = expert_demonstrations(4, seed=0)
    fig, ax = plt.subplots()
    plot_obstacle_task(ax, demos["states"], success=torch.tensor([True, False, True, True]))
    assert len(ax.lines) == 4 and len(ax.patches) == 3
    assert [line.get_color() for line in ax.lines] == [COLORS[2], COLORS[1], COLORS[2], COLORS[2]]
    plt.close(fig)
