"""Diffuser plans that must avoid obstacles it never saw: guidance, projection, best-of-N.

A Diffuser trained on a maze's data knows its walls only through the data; a new obstacle
(a disc of centre ``c_o`` and radius ``r_o``) is a constraint the model was never shown. Three
ways to impose it at sampling time, without retraining, on the plan's positions ``p_k`` (raw
maze units; a ball of radius ``BALL_RADIUS`` must keep ``||p_k - c_o|| >= r_o + BALL_RADIUS``, and a
``margin`` more for the tracking controller):

* **guidance** (Janner et al. 2022, §3.2, with an analytic cost instead of a learned value): a
  differentiable collision cost, the squared penetration of each point into the inflated discs,

      J(tau) = - sum_k sum_o max(0, d_o - ||p_k - c_o||)^2,      d_o = r_o + BALL_RADIUS + margin,

  whose gradient ``grad_p J = 2 max(0, d_o - ||p - c||) (p - c) / ||p - c||`` pushes each point
  radially out; it is added to every reverse step, ``x <- mu + s grad_x J`` (``collision_cost``,
  ``collision_cost_grad``). A soft penalty: nothing guarantees ``J = 0`` at the end.
* **projection** (DPCC, Römer et al. 2025; SafeDiffuser, Xiao et al. 2025, enforces an invariance
  condition per step instead): after every reverse step, each point inside an inflated disc is
  moved radially to its rim, ``p <- c + d (p - c) / ||p - c||`` (``project_out``). The final plan's
  points are outside every disc by construction: a hard guarantee on the *plan*, not on the ball
  that tracks it.
* **best-of-N** (rejection): draw ``N`` times as many plans and keep one that is clear
  (``ConstrainedPlanner`` with ``method="best_of_n"``); its cost grows with ``N``, its failure is
  that no sample is clear.

``constrained_ddim_sample`` is the book's DDIM loop (``GaussianDiffusion.ddim_sample_loop`` with
``eta = 0``) with these two hooks after each step; with neither it returns the same samples.
Shapes: plans ``x: (B, H, 6)`` normalised ``[a, o]`` windows, positions ``(B, H, 2)`` raw units,
``centres: (K, 2)``, ``radii: (K,)``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .diffuser import apply_conditioning, with_mask
from .diffuser_planner import DiffuserPlanner, Plan
from .trajectories import ACTION_DIM, TRANSITION_DIM

__all__ = ["BALL_RADIUS", "check_obstacles", "obstacle_clearance", "collision_cost", "collision_cost_grad",
           "project_out", "wall_penetration", "wall_cost_grad", "project_walls", "constrained_ddim_sample", "ConstrainedPlanner", "METHODS"]

BALL_RADIUS = 0.1
"""The ball's radius (``envs.maze.BALL_RADIUS``): a position collides when its disc overlaps an obstacle."""
METHODS = ("plain", "guidance", "projection", "best_of_n")
_POS = slice(ACTION_DIM, ACTION_DIM + 2)   # the position entries (x, y) of a window [a, o]


def check_obstacles(centres, radii) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate obstacles: ``centres: (K, 2)``, ``radii: (K,) > 0``  ->  both as float32 tensors."""
    c = torch.as_tensor(np.asarray(centres, dtype=np.float32)).reshape(-1, 2) if np.size(centres) else torch.zeros(0, 2)
    r = torch.as_tensor(np.asarray(radii, dtype=np.float32)).reshape(-1)
    if len(c) != len(r):
        raise ValueError(f"need one radius per obstacle centre, got {len(c)} centres and {len(r)} radii")
    if (r <= 0).any() or not torch.isfinite(c).all():
        raise ValueError(f"obstacle radii must be > 0 and centres finite, got radii {r.tolist()}")
    return c, r


def obstacle_clearance(points, centres, radii) -> torch.Tensor:
    """Signed distance of each point to the nearest obstacle: ``min_o ||p - c_o|| - r_o``.

    ``points: (..., 2)`` -> ``(...,)``; ``+inf`` without obstacles. Negative inside a disc; a ball
    centred at ``p`` touches an obstacle when the clearance is below ``BALL_RADIUS``.
    """
    c, r = check_obstacles(centres, radii)
    p = torch.as_tensor(np.asarray(points, dtype=np.float32)) if not isinstance(points, torch.Tensor) else points
    if p.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {tuple(p.shape)}")
    if len(c) == 0:
        return torch.full(p.shape[:-1], float("inf"))
    d = torch.linalg.norm(p[..., None, :] - c.to(p), dim=-1) - r.to(p)   # (..., K)
    return d.min(-1).values


def collision_cost(points: torch.Tensor, centres, radii, margin: float = 0.0) -> torch.Tensor:
    """``J = - sum_k sum_o max(0, d_o - ||p_k - c_o||)^2`` with ``d_o = r_o + BALL_RADIUS + margin``.

    ``points: (B, H, 2)`` raw positions -> ``(B,)``; 0 for a clear plan, negative otherwise.
    """
    c, r = check_obstacles(centres, radii)
    dist = torch.linalg.norm(points[..., None, :] - c.to(points), dim=-1)          # (B, H, K)
    return -(torch.relu(r.to(points) + BALL_RADIUS + margin - dist) ** 2).sum((-1, -2))


def collision_cost_grad(points: torch.Tensor, centres, radii, margin: float = 0.0) -> torch.Tensor:
    """``grad_p J = sum_o 2 max(0, d_o - ||p - c_o||) (p - c_o) / ||p - c_o||``: ``(B, H, 2) -> (B, H, 2)``.

    The analytic gradient of ``collision_cost`` (points exactly at a centre get no push).
    """
    c, r = check_obstacles(centres, radii)
    diff = points[..., None, :] - c.to(points)                                       # (B, H, K, 2)
    dist = torch.linalg.norm(diff, dim=-1, keepdim=True).clamp(min=1e-9)
    depth = torch.relu(r.to(points)[:, None] + BALL_RADIUS + margin - dist)         # (B, H, K, 1)
    return (2 * depth * diff / dist).sum(-2)


def project_out(points: torch.Tensor, centres, radii, margin: float = 0.0, n_sweeps: int = 3) -> torch.Tensor:
    """Move every point inside an inflated disc radially to its rim: ``p <- c + d (p - c) / ||p - c||``.

    ``d = r + BALL_RADIUS + margin``; the obstacles are visited in turn ``n_sweeps`` times
    (alternating projections, for overlapping discs). ``(B, H, 2) -> (B, H, 2)``; a copy.
    """
    c, r = check_obstacles(centres, radii)
    p = points.clone()
    for _ in range(n_sweeps):
        for centre, radius in zip(c.to(p), r.to(p)):
            diff = p - centre
            dist = torch.linalg.norm(diff, dim=-1, keepdim=True)
            d = radius + BALL_RADIUS + margin
            inside = dist < d
            away = torch.where(dist > 1e-9, diff / dist.clamp(min=1e-9), torch.tensor([1.0, 0.0]).to(p))
            p = torch.where(inside, centre + d * away, p)
    return p


def wall_penetration(points: torch.Tensor, wall_cells, margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """How deep each point's inflated disc enters the wall squares, and the push that undoes it.

    For wall cell ``w`` (the square ``w +- 0.5``), ``q = clip(p, w - 0.5, w + 0.5)`` is its closest point
    and ``d = BALL_RADIUS + margin``; the depth is ``max(0, d - ||p - q||)`` (``d`` plus the inside
    distance when ``p`` lies in the square). ``points: (..., 2)``, ``wall_cells: (W, 2)`` ->
    ``depth: (..., W)``, ``direction: (..., W, 2)`` (unit, out of the square).
    """
    w = torch.as_tensor(np.asarray(wall_cells, dtype=np.float32)).to(points).reshape(-1, 2)
    diff = points[..., None, :] - w                                                   # (..., W, 2)
    outside = diff - diff.clamp(-0.5, 0.5)
    dist = torch.linalg.norm(outside, dim=-1)
    inside_gap = 0.5 - diff.abs()                                                     # > 0 inside
    axis = inside_gap.argmin(-1, keepdim=True)
    inside_dir = torch.zeros_like(diff).scatter(-1, axis, torch.sign(diff).gather(-1, axis).clamp_min(0) * 2 - 1)
    is_in = dist < 1e-9
    direction = torch.where(is_in[..., None], inside_dir, outside / dist.clamp(min=1e-9)[..., None])
    depth = torch.where(is_in, BALL_RADIUS + margin + inside_gap.min(-1).values,
                        torch.relu(BALL_RADIUS + margin - dist))
    return depth, direction


def wall_cost_grad(points: torch.Tensor, wall_cells, margin: float = 0.0) -> torch.Tensor:
    """Gradient of ``J_wall = - sum_k sum_w depth_w(p_k)^2`` (``wall_penetration``): ``2 depth direction``,
    summed over the walls. ``(B, H, 2) -> (B, H, 2)``."""
    depth, direction = wall_penetration(points, wall_cells, margin)
    return (2 * depth[..., None] * direction).sum(-2)


def project_walls(points: torch.Tensor, wall_cells, margin: float = 0.0, n_sweeps: int = 2) -> torch.Tensor:
    """Push points out of the inflated wall squares along ``wall_penetration``'s direction (the deepest
    wall first, ``n_sweeps`` times). ``(B, H, 2) -> (B, H, 2)``."""
    p = points.clone()
    for _ in range(n_sweeps):
        depth, direction = wall_penetration(p, wall_cells, margin)
        k = depth.argmax(-1, keepdim=True)
        p = p + depth.gather(-1, k) * direction.gather(-2, k[..., None].expand(*k.shape, 2)).squeeze(-2)
    return p


@torch.no_grad()
def constrained_ddim_sample(model, diffusion, conditions: dict, shape: tuple, n_steps: int, normalizer,
                            centres=(), radii=(), guide_scale: float = 0.0, project: bool = False,
                            margin: float = 0.0, wall_cells=None, wall_margin: float = 0.0, generator: torch.Generator | None = None,
                            return_trajectory: bool = False) -> torch.Tensor:
    """DDIM (``eta = 0``) with inpainting and, after each step, guidance and/or projection.

    Each step ``t -> s``: ``x <- c(sqrt(a_s) x0_hat + sqrt(1 - a_s) eps_hat)`` (the library's step),
    then ``x <- c(x + guide_scale * grad_x J(x))`` (``J`` = ``collision_cost`` of the positions, its
    gradient taken in raw units and carried to the normalised ones), then, with ``project``,
    ``x <- c(P(x))`` (``project_out`` of the positions). ``c`` is ``apply_conditioning``.
    ``shape = (B, H, 6)``; returns ``(B, H, 6)`` normalised, or ``(n_steps + 1, B, H, 6)``.
    """
    if guide_scale < 0:
        raise ValueError(f"guide_scale must be >= 0 (0: no guidance), got {guide_scale}")
    device = generator.device if generator is not None else diffusion.device
    lo, hi = normalizer.lo[_POS].to(device), normalizer.hi[_POS].to(device)
    half = (hi - lo) / 2                                    # d p_raw / d p_norm, per axis

    def cond(x):
        return apply_conditioning(x, conditions)

    def positions(x):
        return lo + (x[..., _POS] + 1) * half

    net = with_mask(model, conditions, tuple(shape), ACTION_DIM, device)
    x = cond(torch.randn(shape, generator=generator, device=device))
    steps = diffusion.ddim_timesteps(n_steps)
    traj = [x]
    for i, t in enumerate(steps):
        s = steps[i + 1] if i + 1 < len(steps) else -1
        tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        eps, x0 = diffusion.predict_eps_x0(net, x, tt)
        a_s = diffusion.alphas_cumprod[s] if s >= 0 else torch.ones((), device=device)
        x = cond(a_s.sqrt() * x0 + (1 - a_s).clamp(min=0).sqrt() * eps)
        if guide_scale > 0 and len(radii):
            grad = collision_cost_grad(positions(x), centres, radii, margin)
            if wall_cells is not None:
                grad = grad + wall_cost_grad(positions(x), wall_cells, wall_margin)
            grad = grad * half                                                             # chain rule to x_norm
            x = x.clone()
            x[..., _POS] += guide_scale * grad
            x = cond(x)
        if project and len(radii):
            x = x.clone()
            p = project_out(positions(x), centres, radii, margin)
            if wall_cells is not None:
                p = project_out(project_walls(p, wall_cells, wall_margin), centres, radii, margin)
            x[..., _POS] = (p - lo) / half - 1
            x = cond(x)
        if return_trajectory:
            traj.append(x)
    return torch.stack(traj) if return_trajectory else x


class ConstrainedPlanner(DiffuserPlanner):
    """The book's Diffuser planner whose plans must also avoid obstacles (``set_obstacles``).

    ``method``: ``"plain"`` ignores them (the reference); ``"guidance"`` (``guide_scale``),
    ``"projection"`` sample with ``constrained_ddim_sample``; ``"best_of_n"`` draws ``n_best``
    plans per arrival candidate and follows the earliest arrival that is both speed-feasible (as the
    plain planner) and clear of the obstacles by ``margin``, else the clearest feasible one.
    Every followed plan is kept in ``followed`` (positions up to its arrival, raw units), so an
    episode's plan violations can be checked; ``plan_seconds`` sums the time spent planning. The other arguments are ``DiffuserPlanner``'s; it
    needs ``arrival="earliest"`` and DDIM (``ddim_steps``), the book's settings. Guided and projected
    plans get velocities re-derived from their positions (``consistent_velocities``).
    """

    def __init__(self, *args, method: str = "plain", guide_scale: float = 0.0, margin: float = 0.1,
                 n_best: int = 4, wall_cells=None, wall_margin: float = 0.0, **kwargs):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if n_best < 1:
            raise ValueError(f"n_best (plans per arrival candidate for best_of_n) must be >= 1, got {n_best}")
        super().__init__(*args, **kwargs)
        if self.arrival != "earliest" or self.ddim_steps is None:
            raise ValueError("ConstrainedPlanner needs arrival='earliest' and ddim_steps set (the book's PLANNER)")
        self.method, self.guide_scale, self.margin, self.n_best = method, float(guide_scale), float(margin), int(n_best)
        self.wall_cells = None if wall_cells is None else np.asarray(wall_cells, dtype=np.float32).reshape(-1, 2)
        self.wall_margin = float(wall_margin)
        self.set_obstacles(np.zeros((0, 2)), np.zeros(0))
        self.plan_seconds = 0.0   # wall time spent in plan(), summed over plans

    def set_obstacles(self, centres, radii) -> None:
        """The obstacles of the coming episode(s): ``centres: (K, 2)``, ``radii: (K,)``; clears ``followed``."""
        self.centres, self.radii = check_obstacles(centres, radii)
        self.followed: list[np.ndarray] = []

    def plan(self, state, goal, horizon: int | None = None, via: dict | None = None) -> Plan:
        """Sample plans from ``state: (4,)`` to ``goal: (2,)`` as ``method`` says; raw units (see the class)."""
        t0 = time.perf_counter()
        horizon = self.horizon if horizon is None else int(horizon)
        state, goal_state = self._request(state, goal)
        n_samples = self.n_samples
        if self.method == "best_of_n":
            self.n_samples = self.n_best * n_samples
        try:
            conditions, arrival, B = self._conditions(state, goal_state, horizon, self.via if via is None else via)
        finally:
            self.n_samples = n_samples
        x = constrained_ddim_sample(
            self.model, self.diffusion, conditions, (B, horizon, TRANSITION_DIM), self.ddim_steps, self.normalizer,
            self.centres, self.radii, guide_scale=self.guide_scale if self.method == "guidance" else 0.0,
            project=self.method == "projection", margin=self.margin, wall_cells=self.wall_cells,
            wall_margin=self.wall_margin, generator=self.generator)
        self.denoiser_evals += B * self.ddim_steps
        plan = self._to_plan(x, arrival)
        if self.method in ("guidance", "projection") and len(self.radii):
            plan.observations[..., 2:] = self.consistent_velocities(plan.observations[..., :2])
        if self.method == "best_of_n" and len(self.radii):
            plan.chosen = self._clearest(plan)
        k = int(plan.arrival[plan.chosen])
        self.followed.append(plan.observations[plan.chosen, :k + 1, :2].copy())
        self.plan_seconds += time.perf_counter() - t0
        return plan

    def consistent_velocities(self, positions: np.ndarray) -> np.ndarray:
        """Velocities that match moved positions: ``v_k = (p_{k+1} - p_{k-1}) / (2 stride dt)`` (one-sided
        at the ends). ``(B, H, 2) -> (B, H, 2)``. Guidance and projection move the positions only; the
        tracker's damping term follows the plan's velocities, which would still point the old way."""
        from ..envs.maze import DT

        return np.gradient(positions, axis=1) / (self.stride * DT)

    def _clearest(self, plan: Plan) -> int:
        """The earliest feasible plan whose points clear every obstacle by ``BALL_RADIUS + margin``
        (up to its arrival), else the feasible (else any) plan with the largest clearance."""
        obs, arrival = plan.observations, plan.arrival
        clear = obstacle_clearance(torch.as_tensor(obs[..., :2]), self.centres, self.radii).numpy()   # (B, H)
        before = np.arange(obs.shape[1])[None, :] <= np.asarray(arrival)[:, None]
        worst = np.where(before, clear, np.inf).min(-1)                                              # (B,)
        feasible = self.feasible(obs, arrival)
        ok = np.flatnonzero(feasible & (worst >= BALL_RADIUS + self.margin))
        if len(ok):
            return int(ok[0])
        pool = np.flatnonzero(feasible) if feasible.any() else np.arange(len(worst))
        return int(pool[np.argmax(worst[pool])])
