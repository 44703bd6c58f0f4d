"""A covariant-gradient trajectory optimiser for the point-mass mazes (CHOMP, Ratliff et al. 2009).

A plan is a sequence of ``H`` positions ``X = (x_0, ..., x_{H-1})``, ``X: (B, H, 2)``, a time
``dt`` apart, whose ends are pinned: ``x_0 = s`` (start), ``x_{H-1} = g`` (goal). Its cost is

    J(X) = 1/2 sum_k || x_{k+1} - 2 x_k + x_{k-1} ||^2                    (smoothness: accelerations)
           + w_c sum_{p in X and segment midpoints} max(eps - d(p), 0)^2   (clearance from the walls)

with ``d(p)`` the signed distance from ``p`` to the nearest wall square and ``eps`` the ball's
radius plus a margin. CHOMP's step is the gradient preconditioned by the smoothness metric
``A = K^T K`` (``K`` the second-difference matrix on the free, interior points):

    X_int <- X_int - lr * A^{-1} grad J(X_int),

so a push away from a wall at one point moves its neighbours along smoothly instead of kinking
the path. From a path through the centres of a grid shortest path (``grid_initial_path``) it
turns the grid's corners into curves the ball can follow.

A plan succeeds (``check_plans``) if it starts at ``s``, ends at ``g``, keeps the ball (radius
0.1) off every wall at its points and at ``n_sub`` points on each segment, and is dynamically
feasible: speeds ``|x_{k+1} - x_k| / dt <= v_max`` and accelerations
``|x_{k+1} - 2 x_k + x_{k-1}| / dt^2 <= a_max``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..envs.maze import ACCEL_PER_ACTION, BALL_RADIUS, MAX_SPEED
from ..envs.maze_grid import MazeGrid

__all__ = ["PlanSpec", "wall_centres", "signed_distance", "trajectory_cost", "grid_initial_path", "optimize_plans", "check_plans"]


@dataclass(frozen=True)
class PlanSpec:
    """What a plan must satisfy, and the optimiser's cost weights.

    ``dt``: seconds between plan points (8 environment steps of 0.01 s); ``v_max`` the environment's
    speed clip; ``a_max`` 0.8 of the acceleration of a full force (``ACCEL_PER_ACTION``), leaving the
    tracking controller some authority; ``margin``: clearance beyond the ball's radius that the
    cost asks for; ``w_c`` the weight of the clearance term.
    """

    dt: float = 0.08
    radius: float = BALL_RADIUS
    margin: float = 0.1
    v_max: float = MAX_SPEED
    a_max: float = 0.8 * ACCEL_PER_ACTION
    w_c: float = 10.0
    n_sub: int = 4


def wall_centres(grid: MazeGrid) -> torch.Tensor:
    """Centres of the wall cells, ``(n_walls, 2) float32`` (each a unit square around its centre)."""
    return torch.as_tensor(np.argwhere(grid.walls), dtype=torch.float32)


def signed_distance(points: torch.Tensor, walls: torch.Tensor) -> torch.Tensor:
    """Signed distance from each point to the nearest wall square (negative inside a wall).

    For a square of half-size 1/2 at ``c``, with ``q = |p - c| - 1/2``:
    ``d = || max(q, 0) || + min(max(q_x, q_y), 0)``. ``points: (..., 2)``, ``walls: (W, 2)`` -> ``(...)``.
    """
    q = (points[..., None, :] - walls).abs() - 0.5                       # (..., W, 2)
    outside = q.clamp(min=0).pow(2).sum(-1).add(1e-12).sqrt()
    inside = q.max(-1).values.clamp(max=0)
    return (outside + inside).min(-1).values


def trajectory_cost(X: torch.Tensor, walls: torch.Tensor, spec: PlanSpec = PlanSpec()) -> torch.Tensor:
    """``J(X)`` of the module docstring, one value per plan: ``X: (B, H, 2)`` -> ``(B,)``."""
    acc = X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]
    mid = 0.5 * (X[:, 1:] + X[:, :-1])
    pts = torch.cat([X, mid], dim=1)
    eps = spec.radius + spec.margin
    clearance = (eps - signed_distance(pts, walls)).clamp(min=0)
    return 0.5 * acc.pow(2).sum((1, 2)) + spec.w_c * clearance.pow(2).sum(1)


def grid_initial_path(grid: MazeGrid, start, goal, horizon: int) -> np.ndarray:
    """A collision-free first guess: the grid shortest path's cell centres, resampled by arc length.

    The polyline ``s, centre(c_1), ..., centre(c_{n-1}), g`` (the start and goal cells' own centres
    left out) is cut into ``H - 1`` equal lengths. ``start, goal: (2,)`` -> ``(H, 2) float64``.
    """
    start, goal = np.asarray(start, dtype=np.float64), np.asarray(goal, dtype=np.float64)
    cells = grid.shortest_path(grid.xy_to_cell(start), grid.xy_to_cell(goal))
    poly = np.concatenate([start[None], grid.cell_to_xy(cells[1:-1]), goal[None]])
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = np.linspace(0.0, s[-1], horizon)
    return np.stack([np.interp(u, s, poly[:, 0]), np.interp(u, s, poly[:, 1])], axis=1)


def _clearance_jacobian(X: torch.Tensor, walls: torch.Tensor, spec: PlanSpec):
    """Residuals ``r = sqrt(w_c) max(eps - d(p), 0)`` at points and midpoints, and their Jacobian.

    ``X: (B, H, 2)`` -> ``r: (B, P)``, ``J: (B, P, 2 (H - 2))`` w.r.t. the interior points, ``P = 2H - 1``.
    """
    B, H, _ = X.shape
    Xg = X.detach().requires_grad_(True)
    mid = 0.5 * (Xg[:, 1:] + Xg[:, :-1])
    pts = torch.cat([Xg, mid], dim=1)                                   # (B, P, 2)
    d = signed_distance(pts, walls)
    (n,) = torch.autograd.grad(d.sum(), pts)                            # unit normals, (B, P, 2)
    active = (d < spec.radius + spec.margin).to(X.dtype)
    w = spec.w_c ** 0.5
    r = w * (spec.radius + spec.margin - d.detach()) * active
    J = torch.zeros(B, 2 * H - 1, H, 2, dtype=X.dtype, device=X.device)
    idx = torch.arange(H, device=X.device)
    J[:, idx, idx] = -n[:, :H]
    J[:, H + idx[:-1], idx[:-1]] = -0.5 * n[:, H:]
    J[:, H + idx[:-1], idx[1:]] = -0.5 * n[:, H:]
    J = J * (w * active)[..., None, None]
    return r, J[:, :, 1:-1].reshape(B, 2 * H - 1, 2 * (H - 2))


def optimize_plans(X0: torch.Tensor, walls: torch.Tensor, n_iters: int, spec: PlanSpec = PlanSpec(),
                   damping: float = 1e-2, stop_when_valid: bool = False, grid: MazeGrid | None = None,
                   check_every: int = 1) -> tuple[torch.Tensor, int]:
    """Run ``n_iters`` Levenberg-Marquardt steps on ``J(X)`` for plans with pinned ends.

    Stacking the residuals ``r = (K X, r_c)`` of ``J = 1/2 ||r||^2`` with Jacobian ``(K, J_c)``, a
    Gauss-Newton step on the interior points ``z = vec(X_int)``, damped by ``mu``, is

        (A + J_c^T J_c + mu I) delta = -(A z + b + J_c^T r_c),

    with ``A = K^T K`` (kron with the 2 coordinates) and ``b`` the pinned ends' share of ``K^T K x``.
    A step that lowers ``J`` is taken and ``mu`` divided by 3; one that does not is refused and ``mu``
    multiplied by 4 (per plan, starting at ``damping``). ``X0: (B, H, 2)`` first guesses (their first
    and last points are the start and goal and never move). With ``stop_when_valid`` (needs ``grid``)
    the plans are checked every ``check_every`` steps and the run stops once all pass
    ``check_plans``. Returns ``(X: (B, H, 2), steps run)``.
    """
    if X0.ndim != 3 or X0.shape[-1] != 2 or X0.shape[1] < 3:
        raise ValueError(f"X0 must be (B, H, 2) positions with H >= 3, got {tuple(X0.shape)}")
    if stop_when_valid and grid is None:
        raise ValueError("stop_when_valid=True needs the grid to check the plans")
    B, H, _ = X0.shape
    K = _second_difference(H, X0.dtype, X0.device)                     # (H - 2, H)
    eye = torch.eye(2 * (H - 2), dtype=X0.dtype, device=X0.device)
    A = torch.kron(K[:, 1:-1].T @ K[:, 1:-1], torch.eye(2, dtype=X0.dtype, device=X0.device))
    mu = torch.full((B, 1, 1), damping, dtype=X0.dtype, device=X0.device)
    X = X0.detach().clone()
    cost = trajectory_cost(X, walls, spec)
    steps = 0
    for steps in range(1, n_iters + 1):
        r, Jc = _clearance_jacobian(X, walls, spec)
        KX = torch.einsum("kh,bhd->bkd", K, X)                            # (B, H - 2, 2)
        grad = torch.einsum("kh,bkd->bhd", K[:, 1:-1], KX).reshape(B, -1) + torch.einsum("bpv,bp->bv", Jc, r)
        delta = torch.linalg.solve(A + Jc.transpose(1, 2) @ Jc + mu * eye, -grad[..., None])[..., 0]
        X_new = X.clone()
        X_new[:, 1:-1] += delta.reshape(B, H - 2, 2)
        cost_new = trajectory_cost(X_new, walls, spec)
        better = cost_new < cost
        X = torch.where(better[:, None, None], X_new, X)
        cost = torch.where(better, cost_new, cost)
        mu = torch.where(better[:, None, None], mu / 3, mu * 4)
        if stop_when_valid and steps % check_every == 0 and check_plans(X, grid, X[:, 0], X[:, -1], spec).all():
            break
    return X, steps


def _second_difference(horizon: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``K: (H - 2, H)``, ``(K X)_k = x_k - 2 x_{k+1} + x_{k+2}``."""
    K = torch.zeros(horizon - 2, horizon, dtype=dtype, device=device)
    k = torch.arange(horizon - 2, device=device)
    K[k, k], K[k, k + 1], K[k, k + 2] = 1.0, -2.0, 1.0
    return K


def check_plans(X, grid: MazeGrid, start, goal, spec: PlanSpec = PlanSpec(), tol: float = 1e-3) -> np.ndarray:
    """Which plans succeed: pinned ends, the ball free of the walls, speeds and accelerations in bounds.

    The ball (``spec.radius``) is tested at every point and at ``spec.n_sub`` points inside each
    segment. ``X: (B, H, 2)``, ``start, goal: (B, 2)`` or ``(2,)`` -> ``(B,) bool``.
    """
    X = X.detach().cpu().double().numpy() if hasattr(X, "detach") else np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[-1] != 2:
        raise ValueError(f"plans must be (B, H, 2) positions, got {X.shape}")
    start = np.broadcast_to(np.asarray(start.cpu() if hasattr(start, "cpu") else start, np.float64), (len(X), 2))
    goal = np.broadcast_to(np.asarray(goal.cpu() if hasattr(goal, "cpu") else goal, np.float64), (len(X), 2))
    ends_ok = (np.linalg.norm(X[:, 0] - start, axis=1) <= tol) & (np.linalg.norm(X[:, -1] - goal, axis=1) <= tol)
    w = np.linspace(0.0, 1.0, spec.n_sub + 2)[:-1]
    dense = (X[:, :-1, None] * (1 - w[:, None]) + X[:, 1:, None] * w[:, None]).reshape(len(X), -1, 2)
    free = grid.is_free(np.concatenate([dense, X[:, -1:]], axis=1), spec.radius).all(axis=1)
    speed = np.linalg.norm(np.diff(X, axis=1), axis=-1).max(axis=1) / spec.dt
    acc = np.linalg.norm(X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2], axis=-1).max(axis=1) / spec.dt ** 2
    return ends_ok & free & (speed <= spec.v_max) & (acc <= spec.a_max)
