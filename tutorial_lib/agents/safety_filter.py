"""A barrier filter on the executed action: keeping the *ball*, not only the plan, off new obstacles.

Guidance and projection make a Diffuser's *plan* clear of an obstacle; the ball then tracks the
plan with a PD law and cuts its curves. A control barrier function (Ames et al. 2019) acts where
the constraint lives, on each action, using the known dynamics of the maze's ball
(``envs.maze``: ``v' = lambda v + b a``, ``p' = p + dt v'``, with ``lambda = VELOCITY_DECAY``,
``b = dt * ACCEL_PER_ACTION``).

For a disc of centre ``c`` and radius ``r``, with ``D = r + BALL_RADIUS + margin``, the unit normal
``n = (p - c) / ||p - c||`` and the distance to the inflated rim ``h = ||p - c|| - D``, the barrier
adds a braking allowance to the distance, since the ball cannot stop at once::

    h_2(p, v) = h + tau (n . v)        (n . v < 0 when approaching)

and the filter asks it to shrink by at most a fraction ``gamma`` per step,
``h_2(p', v') >= (1 - gamma) h_2(p, v)``. To first order in the step (``n`` held), ``h_2`` after the step is
``h + (dt + tau) n . v'``, which is linear in the action: one half-plane per obstacle,

    n . a >= [ (1 - gamma) (h + tau n . v) - h - (dt + tau) lambda (n . v) ] / ((dt + tau) b).

The filtered action is the nominal one moved onto the half-planes it violates, one obstacle at a
time (the nearest last), and clipped to ``[-1, 1]^2``. Two details came from our first version's
failures on tuning pairs, a ball sliding along a wall into a disc beside it: a push into a wall
the ball touches does nothing (the simulator zeroes that velocity), so it must not count towards
the half-plane (``blocked_axes``, given the maze's walls); and the correction is made against the
velocity (braking) when the ball heads into the disc, else along the free part of ``n``. Only
the approach is limited, so the ball slides around a disc. The simulator never sees the discs:
the filter makes them virtual walls. It knows the dynamics and the obstacles, which the Diffuser
does not need to: that is its price.
"""

from __future__ import annotations

import numpy as np

from ..envs.maze import ACCEL_PER_ACTION, DT, VELOCITY_DECAY
from .constrained_sampling import BALL_RADIUS, check_obstacles

__all__ = ["BRAKE_ALIGNMENT", "barrier_halfplanes", "blocked_axes", "filter_action", "SafetyFilteredPolicy"]

BRAKE_ALIGNMENT = 0.3
"""Correct along ``-v`` (braking) when the motion points into the disc at least this much (cosine)."""


def barrier_halfplanes(state, centres, radii, margin: float = 0.05, tau: float = 0.1, gamma: float = 0.1):
    """The constraints ``n_o . a >= beta_o`` of every disc at ``state = (x, y, vx, vy)``.

    Returns ``normals: (K, 2)``, ``beta: (K,)`` and ``h: (K,)`` (the distance to each inflated rim).
    """
    s = np.asarray(state, dtype=np.float64).reshape(-1)
    if s.shape != (4,) or not np.isfinite(s).all():
        raise ValueError(f"state must be a finite (x, y, vx, vy), got {s.tolist()}")
    if tau < 0 or not 0 < gamma <= 1:
        raise ValueError(f"need tau >= 0 and 0 < gamma <= 1, got tau={tau}, gamma={gamma}")
    c, r = (t.numpy().astype(np.float64) for t in check_obstacles(centres, radii))
    p, v = s[:2], s[2:]
    d = p[None] - c                                                    # (K, 2)
    dist = np.linalg.norm(d, axis=1).clip(min=1e-9)
    n = d / dist[:, None]
    h = dist - (r + BALL_RADIUS + margin)
    nv = n @ v
    b = DT * ACCEL_PER_ACTION
    beta = ((1 - gamma) * (h + tau * nv) - h - (DT + tau) * VELOCITY_DECAY * nv) / ((DT + tau) * b)
    return n, beta, h


def blocked_axes(state, action, walls) -> np.ndarray:
    """``(2,)`` bool: the axes along which ``action`` pushes the ball into a wall it touches.

    The simulator pushes a ball out of a wall cell and zeroes that velocity component, so such a
    push has no effect; the filter must not count on it. ``walls``: the maze's ``(rows, cols)`` bools.
    """
    w = np.asarray(walls, dtype=bool)
    p = np.asarray(state, dtype=np.float64).reshape(-1)[:2]
    cell = np.rint(p).astype(int)
    out = np.zeros(2, dtype=bool)
    for axis in range(2):
        side = np.sign(action[axis])
        if side == 0:
            continue
        nb = cell.copy()
        nb[axis] += int(side)
        inside = 0 <= nb[0] < w.shape[0] and 0 <= nb[1] < w.shape[1]
        touching = side * (p[axis] - cell[axis]) >= 0.5 - BALL_RADIUS - 1e-6
        out[axis] = touching and (not inside or w[nb[0], nb[1]])
    return out


def filter_action(action, state, centres, radii, walls=None, **barrier) -> tuple[np.ndarray, bool]:
    """The nominal ``action`` moved onto every half-plane it violates (see the module), clipped to
    ``[-1, 1]^2``: ``(a: (2,), changed)``. With ``walls``, a push into a touched wall counts for nothing."""
    a = np.asarray(action, dtype=np.float64).reshape(2).copy()
    if len(np.asarray(radii).reshape(-1)) == 0:
        return a, False
    n, beta, h = barrier_halfplanes(state, centres, radii, **barrier)
    v = np.asarray(state, dtype=np.float64).reshape(-1)[2:]
    changed = False
    for o in np.argsort(-h):                                           # the nearest disc last: it wins
        free = ~blocked_axes(state, a, walls) if walls is not None else np.ones(2, dtype=bool)
        n_eff = np.where(free, n[o], 0.0)
        gap = beta[o] - n_eff @ a
        if gap <= 0:
            continue
        # brake along the motion when it heads into the disc, else push along the free part of n
        speed = np.linalg.norm(v)
        u = -v / speed if speed > 1e-6 and -(n[o] @ v) / speed > BRAKE_ALIGNMENT else n_eff
        if n[o] @ u <= 1e-6:
            continue                                                    # no free direction helps
        a = np.where(free, a, 0.0) + gap / (n[o] @ u) * u
        changed = True
    return np.clip(a, -1.0, 1.0), changed


class SafetyFilteredPolicy:
    """``policy`` (e.g. a ``ConstrainedPlanner``) with every action passed through :func:`filter_action`.

    ``set_obstacles`` sets the discs of both; other attributes (``followed``, ``plan_seconds``...)
    are the policy's. ``n_filtered`` counts the actions the filter changed since ``reset``.
    """

    def __init__(self, policy, margin: float = 0.05, tau: float = 0.1, gamma: float = 0.1, walls=None):
        self.policy, self.barrier = policy, dict(margin=margin, tau=tau, gamma=gamma)
        self.walls = None if walls is None else np.asarray(walls, dtype=bool)
        self.centres, self.radii = np.zeros((0, 2)), np.zeros(0)
        self.n_filtered = 0

    def set_obstacles(self, centres, radii) -> None:
        c, r = check_obstacles(centres, radii)
        self.centres, self.radii = c.numpy(), r.numpy()
        if hasattr(self.policy, "set_obstacles"):
            self.policy.set_obstacles(centres, radii)

    def reset(self) -> None:
        self.n_filtered = 0
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, obs, goal) -> np.ndarray:
        a, changed = filter_action(self.policy(obs, goal), obs, self.centres, self.radii, walls=self.walls,
                                   **self.barrier)
        self.n_filtered += int(changed)
        return a.astype(np.float32)

    def __getattr__(self, name):
        return getattr(self.policy, name)
