"""Limitations chapter, constraints: how often Diffuser's plans break walls, and new obstacles.

Two measurements on the book's shipped maze Diffusers (``make_planner``, settings ``PLANNER``):

1. **Walls, in distribution.** The first plan the planner follows from a start at rest
   (``first_plan``: the chosen one of its 16 arrival candidates, up to its arrival) *crosses a wall*
   when a planned position's ball (radius 0.1) overlaps a wall cell, or the straight segment
   between two consecutive positions passes through one (``plan_crosses_walls``). Rate on
   ``make_eval_pairs(layout, 250, seed=WALL_SEED)``, per maze; and the same test on the first plans
   of the pairs the maze benchmark's Diffuser failed (``data/bench/maze.json``).
2. **Obstacles never seen in training** (Medium). On each pair, ``n`` discs of radius
   ``OBSTACLE_RADIUS`` are put on the grid shortest path from start to goal (``place_obstacles``):
   ``n`` distinct cells of the path other than its ends, each disc's centre ``OBSTACLE_OFFSET``
   from the cell's centre in a random direction, so that it covers the corridor's centre line,
   which the data and the plain plans follow. A placement is kept only if a ball with clearance
   ``ROUTE_CLEARANCE`` still has a route to the goal (``route_exists``: breadth-first search over a
   ``0.025``-grid of points clear of walls and discs), else redrawn. The simulator does not know
   the discs; the *checks* do: an episode violates when a followed plan (points or segments) or
   the executed path puts the ball's disc into an obstacle, and succeeds when it reaches the goal
   without any violation (``run_constrained_episode``). Methods: ``ConstrainedPlanner``'s plain,
   guidance, projection, best-of-N.

Seeds: the wall pairs ``WALL_SEED``; the obstacle pairs ``OBSTACLE_SEED``; the guidance scale and
``n_best`` were chosen on ``TUNE_SEED`` pairs (``tune_guidance``), never the reported ones.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from ..agents.constrained_sampling import BALL_RADIUS, ConstrainedPlanner, obstacle_clearance
from ..agents.diffuser import load_diffuser
from ..agents.safety_filter import SafetyFilteredPolicy
from ..core.stats import wilson_ci95
from ..envs.maze import GOAL_RADIUS
from ..envs.maze_expert import make_eval_pairs, run_episode
from ..envs.maze_grid import MazeGrid, check_layout
from .maze_eval import BENCH_SEED, ENV_IDS, PLANNER, make_planner

__all__ = ["WALL_SEED", "OBSTACLE_SEED", "TUNE_SEED", "OBSTACLE_RADIUS", "OBSTACLE_OFFSET", "ROUTE_CLEARANCE",
           "REMEDIES", "plan_crosses_walls", "first_plan", "wall_crossing_rate", "route_exists", "place_obstacles",
           "long_route_pairs", "make_constrained_planner", "touches_obstacles", "run_constrained_episode",
           "evaluate_constrained", "obstacle_suite", "failed_first_plans", "bench"]

WALL_SEED = 5
"""Seed of the 250 start/goal pairs of the wall measurement."""
OBSTACLE_SEED = 6
"""Seed of the reported obstacle pairs and placements."""
TUNE_SEED = 7
"""Seed of the pairs on which the remedies' settings were chosen."""
OBSTACLE_RADIUS = 0.2
OBSTACLE_OFFSET = 0.2
ROUTE_CLEARANCE = BALL_RADIUS + 0.1
"""A placement must leave a route for the ball with this much room (its radius and the plans' margin)."""
MIN_ROUTE_CELLS = 8
"""Obstacle pairs have a grid path of at least this many cells (room for 6 discs between start and goal)."""
REMEDIES = dict(plain={}, guidance=dict(guide_scale=0.1), projection={}, best_of_n=dict(n_best=4))
FILTER = dict(margin=0.05, tau=0.1, gamma=0.1)
"""The barrier filter's settings (``agents.safety_filter``), for the ``+filter`` entries: chosen on 10
``TUNE_SEED`` pairs with 1 and 3 obstacles, where margin 0.02 let a grazing ball creep 0.002 into a
disc; the filter's wall handling and braking came from its first version's failures there."""
FILTERED = ("plain", "guidance", "projection")
"""The samplers also run with the barrier filter on their actions (entries ``"<method>+filter"``)."""
"""The methods' settings, chosen on ``TUNE_SEED`` pairs (see ``tune_guidance``); margin 0.1 for all."""


def plan_crosses_walls(grid: MazeGrid, positions, radius: float = BALL_RADIUS, n_sub: int = 10) -> bool:
    """Whether a plan ``positions: (H, 2)`` crosses a wall: a point's ``radius``-disc overlaps a wall
    cell, or a segment between consecutive points (sampled at ``n_sub`` sub-points) enters one."""
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"positions must have shape (H, 2), got {p.shape}")
    if not grid.is_free(p, radius).all():
        return True
    u = np.linspace(0.0, 1.0, n_sub + 1)[:, None, None]
    return bool(not grid.is_free(p[:-1] * (1 - u) + p[1:] * u, 0.0).all())


def first_plan(planner, start, goal) -> np.ndarray:
    """The plan an episode from ``start`` (at rest) to ``goal`` begins with: ``(k + 1, 2)`` positions up
    to its arrival ``k``; the planner is reset first, as ``run_episode`` does."""
    planner.reset()
    plan = planner.plan(np.concatenate([np.asarray(start, dtype=np.float64), [0.0, 0.0]]), goal)
    return plan.observations[plan.chosen, :int(plan.arrival[plan.chosen]) + 1, :2]


def wall_crossing_rate(layout: str, pairs, device=None) -> dict:
    """``{"first_plan_crosses_wall", "n", "ci95", "crossing_pairs"}`` over ``pairs: (n, 2, 2)``."""
    planner, grid = make_planner(check_layout(layout), device=device), MazeGrid.from_layout(layout)
    crosses = np.array([plan_crosses_walls(grid, first_plan(planner, s, g)) for s, g in np.asarray(pairs)])
    low, high = wilson_ci95(int(crosses.sum()), len(crosses))
    return {"first_plan_crosses_wall": round(float(crosses.mean()), 4), "n": len(crosses),
            "ci95": [round(low, 4), round(high, 4)], "crossing_pairs": np.flatnonzero(crosses).tolist()}


def _free_points(grid: MazeGrid, centres, radii, clearance: float, res: float):
    (x0, y0), (x1, y1) = grid.bounds
    xs, ys = np.arange(x0, x1 + 1e-9, res), np.arange(y0, y1 + 1e-9, res)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)                       # (nx, ny, 2)
    free = grid.is_free(pts, clearance)
    if len(radii):
        free &= obstacle_clearance(pts, centres, radii).numpy() >= clearance
    return xs, ys, free


def route_exists(grid: MazeGrid, start, goal, centres, radii, clearance: float = ROUTE_CLEARANCE,
                 res: float = 0.025) -> bool:
    """Whether a ball keeping ``clearance`` from walls and discs can go from ``start`` to ``goal``:
    breadth-first search over the 4-connected points of a ``res``-grid that keep that clearance."""
    xs, ys, free = _free_points(grid, centres, radii, clearance, res)
    idx = lambda p: (int(np.argmin(np.abs(xs - p[0]))), int(np.argmin(np.abs(ys - p[1]))))   # noqa: E731
    a, b = idx(start), idx(goal)
    if not (free[a] and free[b]):
        return False
    seen, queue = np.zeros_like(free), deque([a])
    seen[a] = True
    while queue:
        i, j = queue.popleft()
        if (i, j) == b:
            return True
        for n in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1] and free[n] and not seen[n]:
                seen[n] = True
                queue.append(n)
    return False


def place_obstacles(grid: MazeGrid, start, goal, n: int, rng: np.random.Generator, radius: float = OBSTACLE_RADIUS,
                    offset: float = OBSTACLE_OFFSET, max_tries: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``n`` discs on the shortest grid path from ``start`` to ``goal`` that leave a route (see the module).

    Returns ``centres: (n, 2)``, ``radii: (n,)``. Raises ValueError if the path has fewer than ``n``
    interior cells or no placement leaves a route after ``max_tries`` draws.
    """
    path = grid.shortest_path(grid.xy_to_cell(start), grid.xy_to_cell(goal)).astype(np.float64)
    cells, along = path[1:-1], path[2:] - path[:-2]                 # interior cells, local path direction
    if n < 0 or len(cells) < n:
        raise ValueError(f"{n} obstacles need a path with at least {n} interior cells; this pair's has {len(cells)}")
    normal = np.stack([-along[:, 1], along[:, 0]], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    radii = np.full(n, float(radius))
    for _ in range(max_tries):
        pick = np.sort(rng.choice(len(cells), n, replace=False))
        side = rng.choice([-1.0, 1.0], n)[:, None]
        centres = cells[pick] + offset * side * normal[pick]
        ends = np.linalg.norm(centres[:, None] - np.stack([start, goal])[None], axis=-1).min()
        if ends > radius + 2 * BALL_RADIUS and route_exists(grid, start, goal, centres, radii):
            return centres, radii
    raise ValueError(f"no placement of {n} obstacles left a route from {start} to {goal} in {max_tries} draws")


def long_route_pairs(layout: str, n_pairs: int, seed: int, min_cells: int = MIN_ROUTE_CELLS) -> np.ndarray:
    """The first ``n_pairs`` of ``make_eval_pairs(layout, ., seed)`` whose grid path has ``min_cells`` cells."""
    grid = MazeGrid.from_layout(layout)
    pairs = make_eval_pairs(layout, 20 * n_pairs, seed=seed)
    keep = [p for p in pairs if len(grid.shortest_path(grid.xy_to_cell(p[0]), grid.xy_to_cell(p[1]))) >= min_cells]
    return np.asarray(keep[:n_pairs])


def make_constrained_planner(layout: str, method: str, device=None, margin: float = 0.1, **settings):
    """The shipped Diffuser of ``layout`` in a ``ConstrainedPlanner`` with ``PLANNER`` and ``REMEDIES[method]``."""
    model, diffusion, normalizer, cfg = load_diffuser(f"maze-{check_layout(layout)}-diffuser", device=device)
    return ConstrainedPlanner(model, diffusion, normalizer, horizon=cfg.horizon, stride=cfg.stride, device=device,
                              method=method, margin=margin, wall_cells=border_walls(MazeGrid.from_layout(layout)),
                              **{**PLANNER, **REMEDIES.get(method, {}), **settings})


def border_walls(grid: MazeGrid) -> np.ndarray:
    """The wall cells next to a free cell (8 neighbours), ``(W, 2)``: the only walls a plan can touch."""
    free = np.pad(~grid.walls, 1)
    near = np.zeros_like(grid.walls)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near |= free[1 + di:1 + di + grid.shape[0], 1 + dj:1 + dj + grid.shape[1]]
    return np.argwhere(grid.walls & near).astype(np.float64)


def touches_obstacles(positions, centres, radii, n_sub: int = 4) -> bool:
    """Whether a ball on ``positions: (T, 2)`` (and on ``n_sub`` points of each segment) touches a disc."""
    p = np.asarray(positions, dtype=np.float64)
    if len(radii) == 0 or len(p) == 0:
        return False
    u = np.linspace(0.0, 1.0, n_sub + 1)[:, None, None]
    dense = (p[:-1] * (1 - u) + p[1:] * u).reshape(-1, 2) if len(p) > 1 else p
    return bool((obstacle_clearance(dense, centres, radii).numpy() < BALL_RADIUS).any())


def run_constrained_episode(env, planner: ConstrainedPlanner, start, goal, centres, radii, seed: int = 0) -> dict:
    """One episode with obstacles the simulator ignores: ``{"states": (T + 1, 4), "reached",
    "plan_violation", "path_violation", "violation", "success", "n_plans"}``."""
    planner.set_obstacles(centres, radii)
    states, _, first = run_episode(env, planner, start, goal, seed=seed)
    plan_v = any(touches_obstacles(p, centres, radii) for p in planner.followed)
    path_v = touches_obstacles(states[:, :2], centres, radii, n_sub=1)
    reached = first is not None
    path_clear = float(obstacle_clearance(states[:, :2], centres, radii).min()) if len(radii) else float("inf")
    return {"states": states, "reached": reached, "plan_violation": plan_v, "path_violation": path_v,
            "path_clearance": path_clear,
            "violation": plan_v or path_v, "success": reached and not (plan_v or path_v),
            "n_plans": len(planner.followed)}


def _rate(flags) -> tuple[float, list]:
    f = np.asarray(flags, dtype=bool)
    low, high = wilson_ci95(int(f.sum()), len(f))
    return round(float(f.mean()), 4), [round(low, 4), round(high, 4)]


def evaluate_constrained(method: str, pairs, obstacles, layout: str = "medium", device=None, log=None,
                         filtered: bool = False, **settings) -> dict:
    """Run ``method`` on every pair with its obstacles (``[(centres, radii), ...]``): rates with Wilson 95 %
    intervals (``violation_rate``, ``success``, ``reached``, ``plan_violation``, ``path_violation``),
    ``n_episodes``, ``median_path_clearance`` (the executed path's smallest distance to a disc's rim,
    median over episodes; the ball touches below 0.1) and ``plan_ms`` (mean wall time of one plan, ms).
    ``filtered``: every action passes the barrier filter of ``agents.safety_filter`` (``FILTER``);
    ``filtered_share`` is then the share of steps whose action it changed."""
    import gymnasium as gym

    planner = make_constrained_planner(layout, method, device=device, **settings)
    policy = SafetyFilteredPolicy(planner, walls=MazeGrid.from_layout(layout).walls, **FILTER) if filtered else planner
    env, rows, n_changed = gym.make(ENV_IDS[layout]), [], 0
    for k, ((start, goal), (centres, radii)) in enumerate(zip(pairs, obstacles)):
        rows.append(run_constrained_episode(env, policy, start, goal, centres, radii, seed=k))
        n_changed += getattr(policy, "n_filtered", 0)
    env.close()
    out = {"n_episodes": len(rows), "ci95": {}}
    for key in ("violation", "success", "reached", "plan_violation", "path_violation"):
        name = "violation_rate" if key == "violation" else key
        out[name], out["ci95"][name] = _rate([r[key] for r in rows])
    out["median_path_clearance"] = round(float(np.median([r["path_clearance"] for r in rows])), 3)
    out["plan_ms"] = round(1000 * planner.plan_seconds / max(sum(r["n_plans"] for r in rows), 1), 1)
    if filtered:
        out["filtered_share"] = round(n_changed / max(sum(len(r["states"]) - 1 for r in rows), 1), 4)
    if log is not None:
        log(f"  {method}: {out}")
    return out


def filtered_entries(pairs, obstacles, device=None, log=None) -> dict:
    """``{"<method>+filter": evaluate_constrained(method, ..., filtered=True)}`` for ``FILTERED``."""
    return {f"{m}+filter": evaluate_constrained(m, pairs, obstacles, device=device, log=log, filtered=True)
            for m in FILTERED}


def obstacle_suite(n_obstacles: int, n_pairs: int, seed: int = OBSTACLE_SEED, layout: str = "medium"):
    """The pairs ``(n, 2, 2)`` and their seeded obstacles ``[(centres, radii), ...]`` of one obstacle count."""
    grid, pairs = MazeGrid.from_layout(layout), long_route_pairs(layout, n_pairs, seed)
    rng = np.random.default_rng([seed, n_obstacles])
    return pairs, [place_obstacles(grid, s, g, n_obstacles, rng) for s, g in pairs]


def failed_first_plans(maze_json="data/bench/maze.json", device=None) -> dict:
    """For the maze benchmark's failed Diffuser episodes (``BENCH_SEED`` pairs), whether their first plan
    crossed a wall: ``{layout: {"failed_pairs", "first_plan_crosses_wall": [bool, ...]}}``."""
    path = Path(maze_json)
    if not path.is_file():
        return {}
    bench = json.loads(path.read_text())
    out = {}
    for layout in ("umaze", "medium", "large"):
        entry = bench.get(layout, {})
        failed, n = entry.get("diffuser_failed_pairs", []), entry.get("n_pairs", 0)
        if not n:
            continue
        pairs = make_eval_pairs(layout, n, seed=BENCH_SEED)
        planner, grid = make_planner(layout, device=device), MazeGrid.from_layout(layout)
        out[layout] = {"failed_pairs": failed, "first_plan_crosses_wall":
                       [plan_crosses_walls(grid, first_plan(planner, *pairs[i])) for i in failed]}
    return out


def bench(quick: bool = False, device=None, log=print) -> dict:
    """The chapter's stored numbers (see the module): ``{"walls": {layout: {...}}, "failed_episodes":
    {...}, "obstacles_1" / "_3" / "_6": {method: {...}, "best": name}, "settings": {...}}``.

    ``quick``: 4 wall pairs on U-Maze and 2 episodes per method with 1 obstacle (< 60 s).
    """
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n_walls, layouts = (4, ("umaze",)) if quick else (250, ("umaze", "medium", "large"))
    out = {"walls": {}}
    for layout in layouts:
        out["walls"][layout] = wall_crossing_rate(layout, make_eval_pairs(layout, n_walls, seed=WALL_SEED), device)
        log(f"walls {layout}: {out['walls'][layout]['first_plan_crosses_wall']} ({time.perf_counter() - t0:.0f} s)")
    if not quick:
        out["failed_episodes"] = failed_first_plans(device=device)
    counts, n_pairs = ((1,), 2) if quick else ((1, 3, 6), 50)
    for n in counts:
        pairs, obstacles = obstacle_suite(n, n_pairs)
        entry = {m: evaluate_constrained(m, pairs, obstacles, device=device, log=log) for m in REMEDIES}
        entry.update(filtered_entries(pairs, obstacles, device=device, log=log))
        remedies = [m for m in entry if m != "plain"]
        entry["best"] = max(remedies, key=lambda m: (entry[m]["success"], -entry[m]["violation_rate"]))
        out[f"obstacles_{n}"] = entry
        log(f"obstacles {n}: best {entry['best']} ({time.perf_counter() - t0:.0f} s)")
    out["settings"] = {"wall_seed": WALL_SEED, "obstacle_seed": OBSTACLE_SEED, "tune_seed": TUNE_SEED,
                       "obstacle_radius": OBSTACLE_RADIUS, "obstacle_offset": OBSTACLE_OFFSET,
                       "min_route_cells": MIN_ROUTE_CELLS, "remedies": REMEDIES, "margin": 0.1, "filter": FILTER,
                       "quick": quick}
    out["bench_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def write_bench(out: dict, path="data/bench/limitations.json", key: str = "constraints") -> Path:
    """Store ``out`` under ``key`` of the Limitations part's bench file, keeping its other keys."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


if __name__ == "__main__":   # python -m tutorial_lib.experiments.limitations_constraints [--quick]
    import sys

    result = bench(quick="--quick" in sys.argv)
    if "--quick" not in sys.argv:
        print(write_bench(result))
    print(json.dumps(result, indent=1))
