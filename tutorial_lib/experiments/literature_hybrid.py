"""A score learned from an optimiser's solutions: Motion Planning Diffusion (Carvalho et al. 2023) in a maze.

The hybrid cell of the book's map. An optimiser (``trajectory_optimizer``: a grid shortest path
smoothed by Levenberg-Marquardt on a smoothness + wall-clearance cost) solves many start-goal
problems of the Medium maze offline; its solutions, ``H = 64`` positions each, scaled to
``[-1, 1]``, train a small trajectory diffusion model (Diffuser's ``TemporalUnet``, x0-prediction,
cosine schedule) conditioned by inpainting the start ``x_0`` and the goal ``x_{H-1}``. On held-out
problems three planners are compared (``compare_planners``):

* ``optimizer``: grid path + LM steps until the plan passes ``check_plans`` (the data's solver);
* ``diffusion``: ``n_candidates`` plans sampled with a few DDIM steps; the valid one of least cost;
* ``warm_start``: the best of fewer sampled plans, then LM steps until it is valid (MPD's use of
  the prior as an initialisation).

and, to show what the grid's global search is worth, ``straight_line``: LM from the straight
segment start-goal, as an optimiser without a map-wide planner would start.

The planners' settings (candidates, DDIM steps, iteration caps) were chosen on problems drawn
with ``VALIDATION_SEED``; the reported problems use ``BENCH_SEED``; the training problems
``HybridPriorConfig.data_seed``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..agents.diffuser import diffuser_loss, make_diffusion, sample_plans
from ..agents.trajectory_optimizer import (PlanSpec, check_plans, grid_initial_path, optimize_plans,
                                           trajectory_cost, wall_centres)
from ..core.stats import wilson_ci95
from ..envs.maze_grid import MazeGrid
from ..nets.temporal_unet import TemporalUnet

__all__ = ["HybridPriorConfig", "sample_problems", "solve_problems", "to_unit", "from_unit", "prior_data",
           "build_prior_net", "prior_loss", "load_prior", "plan_optimizer", "plan_diffusion",
           "plan_warm_start", "plan_straight_line", "compare_planners", "bench",
           "VALIDATION_SEED", "BENCH_SEED"]

VALIDATION_SEED = 101
BENCH_SEED = 202
START_NOISE = 0.25
"""Starts and goals are a free cell's centre plus ``U(-0.25, 0.25)^2``."""


@dataclass(frozen=True)
class HybridPriorConfig:
    """The prior of optimiser solutions: data, network and training (``literature-hybrid-prior``).

    ``n_problems`` start-goal pairs of ``layout`` solved with ``n_opt_iters`` LM steps each;
    ``TemporalUnet(2, dim, dim_mults)`` over ``horizon`` positions; ``n_diffusion_steps`` of a
    cosine schedule, x0-prediction (Diffuser's); Adam, ``n_steps`` of batches of ``batch_size``.
    """

    layout: str = "medium"
    horizon: int = 64
    n_problems: int = 3000
    data_seed: int = 0
    n_opt_iters: int = 10
    n_diffusion_steps: int = 32
    dim: int = 16
    dim_mults: tuple = (1, 2, 4)
    n_steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.995
    lr_schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))
        if self.horizon % 2 ** (len(self.dim_mults) - 1):
            raise ValueError(f"horizon {self.horizon} must be a multiple of {2 ** (len(self.dim_mults) - 1)}")


def sample_problems(grid: MazeGrid, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` start-goal pairs: uniform free cells plus ``U(-0.25, 0.25)^2``. -> ``starts, goals: (n, 2)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1 problem, got {n}")
    rng = np.random.default_rng(seed)
    cells = grid.free_cells
    pick = lambda: cells[rng.integers(len(cells), size=n)] + rng.uniform(-START_NOISE, START_NOISE, (n, 2))  # noqa: E731
    return pick(), pick()


def solve_problems(grid: MazeGrid, starts, goals, horizon: int, n_iters: int, spec: PlanSpec = PlanSpec(),
                   chunk: int = 500) -> torch.Tensor:
    """The optimiser's solutions, ``(n, H, 2) float32``: grid path, then ``n_iters`` LM steps, in chunks."""
    walls = wall_centres(grid)
    out = []
    for i in range(0, len(starts), chunk):
        X0 = torch.tensor(np.stack([grid_initial_path(grid, s, g, horizon)
                                    for s, g in zip(starts[i:i + chunk], goals[i:i + chunk])]), dtype=torch.float32)
        out.append(optimize_plans(X0, walls, n_iters, spec)[0])
    return torch.cat(out)


def _scale(grid: MazeGrid) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in grid.bounds)
    return (lo + hi) / 2, (hi - lo) / 2


def to_unit(X: torch.Tensor, grid: MazeGrid) -> torch.Tensor:
    """Positions to ``[-1, 1]``: ``(x - centre) / half-size`` of the maze's square. Any shape ``(..., 2)``."""
    centre, half = _scale(grid)
    return (X - centre.to(X.device)) / half.to(X.device)


def from_unit(Z: torch.Tensor, grid: MazeGrid) -> torch.Tensor:
    """Inverse of ``to_unit``."""
    centre, half = _scale(grid)
    return Z * half.to(Z.device) + centre.to(Z.device)


def prior_data(cfg: HybridPriorConfig) -> torch.Tensor:
    """The training rows: the optimiser's solutions of ``cfg.n_problems`` problems, ``(n, H, 2)`` in ``[-1, 1]``."""
    grid = MazeGrid.from_layout(cfg.layout)
    starts, goals = sample_problems(grid, cfg.n_problems, cfg.data_seed)
    return to_unit(solve_problems(grid, starts, goals, cfg.horizon, cfg.n_opt_iters), grid)


def build_prior_net(cfg: HybridPriorConfig) -> TemporalUnet:
    return TemporalUnet(2, dim=cfg.dim, dim_mults=cfg.dim_mults)


def prior_loss(cfg: HybridPriorConfig, device):
    """Diffuser's loss with the start and goal inpainted (positions only: ``action_dim = 0``)."""
    diffusion = make_diffusion(cfg.n_diffusion_steps).to(device)
    return lambda model, x0, g: diffuser_loss(model, diffusion, x0, g, action_dim=0, conditioning="start_goal")


def load_prior(path=None, device=None):
    """The shipped prior (``path=None``) or the file at ``path``: ``(model, diffusion, config, checkpoint)``."""
    from ..core.recipes import load_recipe_model

    model, ckpt, cfg = load_recipe_model("literature-hybrid-prior", path=path, device=device)
    return model, make_diffusion(cfg.n_diffusion_steps).to(next(model.parameters()).device), cfg, ckpt


# ---------------------------------------------------------------------------- the planners
def plan_optimizer(grid, walls, start, goal, horizon: int, max_iters: int = 30, spec: PlanSpec = PlanSpec()):
    """Grid path, then LM steps until valid (at most ``max_iters``). -> ``(H, 2)`` plan."""
    X0 = torch.tensor(grid_initial_path(grid, start, goal, horizon), dtype=torch.float32)[None]
    return optimize_plans(X0, walls, max_iters, spec, stop_when_valid=True, grid=grid)[0][0]


def plan_straight_line(grid, walls, start, goal, horizon: int, max_iters: int = 30, spec: PlanSpec = PlanSpec()):
    """LM steps from the straight segment start-goal (no grid search), until valid. -> ``(H, 2)``."""
    u = torch.linspace(0, 1, horizon)[:, None]
    s, g = (torch.as_tensor(np.asarray(p), dtype=torch.float32) for p in (start, goal))
    X0 = ((1 - u) * s + u * g)[None]
    return optimize_plans(X0, walls, max_iters, spec, stop_when_valid=True, grid=grid)[0][0]


def plan_diffusion(model, diffusion, grid, walls, start, goal, horizon: int, n_candidates: int = 16,
                   ddim_steps: int = 4, generator=None, spec: PlanSpec = PlanSpec()):
    """Sample ``n_candidates`` plans from the prior, start and goal inpainted; keep the best.

    The best is the valid plan (``check_plans``) of least ``trajectory_cost``, or the plan of least
    cost if none is valid. Returns ``(plan: (H, 2), valid: bool)``.
    """
    s, g = (to_unit(torch.as_tensor(np.asarray(p), dtype=torch.float32), grid) for p in (start, goal))
    Z = sample_plans(model, diffusion, {0: s, horizon - 1: g}, (n_candidates, horizon, 2),
                     ddim_steps=ddim_steps, generator=generator, action_dim=0)
    X = from_unit(Z, grid)
    X[:, 0], X[:, -1] = torch.as_tensor(np.asarray(start)), torch.as_tensor(np.asarray(goal))  # undo rounding
    valid = torch.as_tensor(check_plans(X, grid, start, goal, spec))
    cost = trajectory_cost(X, walls, spec) + 1e6 * (~valid)
    best = int(cost.argmin())
    return X[best], bool(valid[best])


def plan_warm_start(model, diffusion, grid, walls, start, goal, horizon: int, n_candidates: int = 4,
                    ddim_steps: int = 4, max_iters: int = 30, generator=None, spec: PlanSpec = PlanSpec()):
    """The prior's best of ``n_candidates`` samples, then LM steps until valid (MPD's warm start)."""
    X, valid = plan_diffusion(model, diffusion, grid, walls, start, goal, horizon, n_candidates, ddim_steps,
                              generator, spec)
    if valid:
        return X
    return optimize_plans(X[None], walls, max_iters, spec, stop_when_valid=True, grid=grid)[0][0]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, 1e3 * (time.perf_counter() - t0)


def compare_planners(model, diffusion, grid: MazeGrid, starts, goals, horizon: int, n_candidates: int = 16,
                     warm_candidates: int = 4, ddim_steps: int = 4, max_iters: int = 30, seed: int = 0,
                     spec: PlanSpec = PlanSpec(), methods=("optimizer", "diffusion", "warm_start", "straight_line")):
    """Run each planner on every problem, one at a time; ``{method: {"ms", "success", "collision_free": (n,), "plans": (n, H, 2)}}``.

    ``ms`` is each plan's wall time (one call, after one untimed warm-up call), ``success`` whether
    the returned plan passes ``check_plans`` (collision-free with the ball's radius, at the goal,
    within the speed and acceleration bounds), ``collision_free`` the same check without the bounds.
    """
    walls = wall_centres(grid)
    gen = torch.Generator().manual_seed(seed)
    run = {
        "optimizer": lambda s, g: plan_optimizer(grid, walls, s, g, horizon, max_iters, spec),
        "straight_line": lambda s, g: plan_straight_line(grid, walls, s, g, horizon, max_iters, spec),
        "diffusion": lambda s, g: plan_diffusion(model, diffusion, grid, walls, s, g, horizon, n_candidates,
                                                 ddim_steps, gen, spec)[0],
        "warm_start": lambda s, g: plan_warm_start(model, diffusion, grid, walls, s, g, horizon, warm_candidates,
                                                   ddim_steps, max_iters, gen, spec),
    }
    unknown = set(methods) - set(run)
    if unknown:
        raise ValueError(f"unknown planners {sorted(unknown)}; choose from {sorted(run)}")
    results = {}
    for name in methods:
        run[name](starts[0], goals[0])  # warm-up: first-call overheads are not a plan's cost
        plans, ms = zip(*(_timed(lambda: run[name](s, g)) for s, g in zip(starts, goals)))
        plans = torch.stack(plans)
        results[name] = {"ms": np.array(ms), "plans": plans,
                         "success": check_plans(plans, grid, starts, goals, spec),
                         "collision_free": check_plans(plans, grid, starts, goals,
                                                       replace(spec, v_max=np.inf, a_max=np.inf))}
    return results


def bench(quick: bool = False) -> dict:
    """The comparison on held-out problems (``BENCH_SEED``) with the shipped prior, on one CPU thread.

    Returns median ms per plan and success rate of each planner, with Wilson 95 % intervals in
    ``ci95``; ``quick=True`` runs 8 problems instead of 100 (a smoke test, < 30 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, diffusion, cfg, _ = load_prior(device="cpu")
        grid = MazeGrid.from_layout(cfg.layout)
        n = 8 if quick else 100
        starts, goals = sample_problems(grid, n, BENCH_SEED)
        res = compare_planners(model, diffusion, grid, starts, goals, cfg.horizon)
    finally:
        torch.set_num_threads(threads)
    out, ci = {}, {}
    for name, r in res.items():
        k = int(r["success"].sum())
        out[f"{name}_ms"] = round(float(np.median(r["ms"])), 2)
        out[f"{name}_success"] = round(k / n, 3)
        out[f"{name}_collision_free"] = round(float(r["collision_free"].mean()), 3)
        ci[f"{name}_success"] = [round(v, 3) for v in wilson_ci95(k, n)]
    out["speedup_diffusion_vs_optimizer"] = round(out["optimizer_ms"] / out["diffusion_ms"], 2)
    out["n_problems"] = n
    out["ci95"] = ci
    return out
