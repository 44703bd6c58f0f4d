"""Tests of the barrier filter on the maze ball's actions (Part 5, constraints): the half-planes, the
filtered action, and closed-loop runs of the exact dynamics that must never touch a disc."""

import numpy as np
import pytest

from tutorial_lib.agents.constrained_sampling import BALL_RADIUS
from tutorial_lib.agents.safety_filter import SafetyFilteredPolicy, barrier_halfplanes, blocked_axes, filter_action
from tutorial_lib.envs.maze import point_mass_step
from tutorial_lib.envs.maze_grid import MazeGrid

OPEN = [[False] * 12 for _ in range(12)]          # no walls near the discs below
CENTRE, RADIUS = np.array([[5.0, 5.0]]), np.array([0.2])


def test_halfplanes_bind_only_when_close_and_approaching():
    far = barrier_halfplanes([2.0, 5.0, 0.0, 0.0], CENTRE, RADIUS)
    assert far[1][0] < -1 and far[2][0] == pytest.approx(3.0 - (0.2 + BALL_RADIUS + 0.05))
    rushing = barrier_halfplanes([4.5, 5.0, 2.0, 0.0], CENTRE, RADIUS)       # 0.5 from the centre, heading in
    leaving = barrier_halfplanes([4.5, 5.0, -2.0, 0.0], CENTRE, RADIUS)
    assert rushing[1][0] > 0 > leaving[1][0]
    np.testing.assert_allclose(rushing[0][0], [-1.0, 0.0])                 # the normal points away from the disc
    with pytest.raises(ValueError, match="state"):
        barrier_halfplanes([1.0, 2.0], CENTRE, RADIUS)


def test_filtered_action_meets_every_halfplane_it_can_and_leaves_safe_actions_alone():
    state = [4.55, 5.0, 1.0, 0.3]
    n, beta, _ = barrier_halfplanes(state, CENTRE, RADIUS)
    a, changed = filter_action([1.0, 0.0], state, CENTRE, RADIUS)
    assert changed and n[0] @ a >= beta[0] - 1e-9 and np.all(np.abs(a) <= 1)
    away, changed = filter_action([-1.0, 0.2], state, CENTRE, RADIUS)
    assert not changed and np.allclose(away, [-1.0, 0.2])
    none, changed = filter_action([0.3, -0.4], state, np.zeros((0, 2)), np.zeros(0))
    assert not changed and np.allclose(none, [0.3, -0.4])


def _run(walls, pos, vel, nominal, centres, radii, steps=300, filtered=True):
    clearance = []
    for _ in range(steps):
        a = np.asarray(nominal(np.r_[pos, vel]), dtype=np.float64)
        if filtered:
            a, _ = filter_action(a, np.r_[pos, vel], centres, radii, walls=walls)
        pos, vel = point_mass_step(walls, pos, vel, tuple(np.clip(a, -1, 1)))
        clearance.append(np.min(np.linalg.norm(np.asarray(pos) - centres, axis=1) - radii))
    return np.array(clearance), np.asarray(pos)


def test_a_ball_driven_at_a_disc_never_touches_it_and_slides_round():
    goal = np.array([6.0, 5.05])                        # behind the disc, a little off its axis
    pd = lambda s: 1.0 * (goal - s[:2]) - 0.5 * s[2:]   # noqa: E731
    plain, _ = _run(OPEN, (3.8, 5.0), (0.0, 0.0), pd, CENTRE, RADIUS, filtered=False)
    safe, end = _run(OPEN, (3.8, 5.0), (0.0, 0.0), pd, CENTRE, RADIUS)
    assert plain.min() < BALL_RADIUS                    # unfiltered, it runs into the disc
    assert safe.min() >= BALL_RADIUS                    # filtered, never closer than touching
    assert end[0] > 5.0                                 # and it got past


def test_the_filter_holds_for_a_ball_sliding_along_a_wall():
    """The case that broke the first version: pressed against a wall (x = 4.4 in Medium), moving
    up and pushed on towards a disc beside the wall; a push along the disc's normal went
    partly into the wall, and the push into the wall was counted as moving away. Without the walls
    the filter is fooled; with them it keeps the ball off."""
    walls = MazeGrid.from_layout("medium").walls.tolist()
    centres, radii = np.array([[4.2, 5.0]]), np.array([0.2])
    press_up = lambda s: np.array([1.0, 1.0])           # noqa: E731
    plain, _ = _run(walls, (4.4, 4.62), (0.0, 0.8), press_up, centres, radii, steps=120, filtered=False)
    safe, _ = _run(walls, (4.4, 4.62), (0.0, 0.8), press_up, centres, radii, steps=120)
    assert plain.min() < BALL_RADIUS and safe.min() >= BALL_RADIUS
    fooled = []
    pos, vel = (4.4, 4.62), (0.0, 0.8)
    for _ in range(120):
        a, _ = filter_action([1.0, 1.0], np.r_[pos, vel], centres, radii)        # walls not given
        pos, vel = point_mass_step(walls, pos, vel, tuple(a))
        fooled.append(np.linalg.norm(np.asarray(pos) - centres[0]) - radii[0])
    assert min(fooled) < BALL_RADIUS


def test_blocked_axes_are_the_pushes_into_a_touched_wall():
    walls = MazeGrid.from_layout("medium").walls
    # (4.4, 4.7): cell (4, 5), touching the wall cell (5, 5) below in x; free along y
    assert blocked_axes([4.4, 4.7, 0, 0], [1.0, 1.0], walls).tolist() == [True, False]
    assert blocked_axes([4.4, 4.7, 0, 0], [-1.0, 1.0], walls).tolist() == [False, False]
    assert blocked_axes([4.2, 4.7, 0, 0], [1.0, 1.0], walls).tolist() == [False, False]    # not touching


class _Recorder:
    def __init__(self):
        self.obstacles, self.resets, self.followed = None, 0, ["plan"]

    def set_obstacles(self, centres, radii):
        self.obstacles = (centres, radii)

    def reset(self):
        self.resets += 1

    def __call__(self, obs, goal):
        return np.array([1.0, 0.0], np.float32)


def test_the_wrapper_passes_obstacles_and_attributes_through_and_counts_changes():
    inner = _Recorder()
    policy = SafetyFilteredPolicy(inner)
    policy.set_obstacles(CENTRE, RADIUS)
    policy.reset()
    assert inner.obstacles is not None and inner.resets == 1 and policy.followed == ["plan"]
    policy(np.array([2.0, 5.0, 0.0, 0.0]), None)          # far: untouched
    a = policy(np.array([4.6, 5.0, 2.0, 0.0]), None)      # close and fast: braked
    assert policy.n_filtered == 1 and a[0] < 1.0 and a.dtype == np.float32
