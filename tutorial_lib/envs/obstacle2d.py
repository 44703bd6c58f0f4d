"""A point in the plane goes from the bottom to a goal at the top, around a round obstacle.

The smallest task where demonstrations are *multimodal*: an expert passes the obstacle on the
left or on the right, about half the time each, whatever the start. Averaging the two ways
(behaviour cloning with a squared loss) heads straight into the obstacle.

Geometry (:class:`ObstacleTask`, all in the square ``[-1, 1]^2``)::

    goal    disc of radius 0.12 around (0, 0.85)
    obstacle disc of radius 0.35 around (0, 0)
    start   x ~ U(-0.2, 0.2), y ~ U(-0.9, -0.8)

State ``s = (x, y)``; action ``a`` a displacement with ``||a|| <= max_step`` (longer ones are
scaled down); ``s_{k+1} = clip(s_k + a_k, -1, 1)``. An episode succeeds when the point enters
the goal disc within ``max_steps`` steps and no step's segment ``[s_k, s_{k+1}]`` touches the
obstacle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["ObstacleTask", "sample_start_states", "segment_hits_disc", "expert_demonstrations",
           "demonstration_chunks", "rollout", "passing_side"]


@dataclass(frozen=True)
class ObstacleTask:
    """Geometry and limits of the task (see the module docstring)."""

    goal: tuple[float, float] = (0.0, 0.85)
    goal_radius: float = 0.12
    obstacle: tuple[float, float] = (0.0, 0.0)
    obstacle_radius: float = 0.35
    start_x: tuple[float, float] = (-0.2, 0.2)
    start_y: tuple[float, float] = (-0.9, -0.8)
    max_step: float = 0.1
    max_steps: int = 60

    def __post_init__(self):
        if self.max_step <= 0 or self.max_steps < 1:
            raise ValueError(f"max_step must be > 0 and max_steps >= 1, got {self.max_step}, {self.max_steps}")
        if self.obstacle_radius <= 0 or self.goal_radius <= 0:
            raise ValueError("obstacle_radius and goal_radius must be positive, got "
                             f"{self.obstacle_radius}, {self.goal_radius}")


def _check_states(states: torch.Tensor, name: str = "states") -> torch.Tensor:
    states = torch.as_tensor(states, dtype=torch.float32)
    if states.ndim != 2 or states.shape[1] != 2:
        raise ValueError(f"{name} must have shape (B, 2), got {tuple(states.shape)}")
    if not torch.isfinite(states).all():
        raise ValueError(f"{name} must be finite, got {states[~torch.isfinite(states).all(1)][:3].tolist()}")
    return states


def sample_start_states(n: int, seed: int = 0, task: ObstacleTask = ObstacleTask()) -> torch.Tensor:
    """``n`` start states drawn uniformly from the start box, reproducibly from ``seed``. Returns ``(n, 2)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g)
    lo = torch.tensor([task.start_x[0], task.start_y[0]])
    hi = torch.tensor([task.start_x[1], task.start_y[1]])
    return lo + u * (hi - lo)


def segment_hits_disc(p: torch.Tensor, q: torch.Tensor, center, radius: float) -> torch.Tensor:
    """Whether the segment ``[p, q]`` comes within ``radius`` of ``center``.

    The closest point is ``p + u (q - p)``, ``u = clip(<c - p, q - p> / ||q - p||^2, 0, 1)``.
    Shapes: p, q ``(B, 2)``  ->  ``(B,)`` bool.
    """
    c = torch.as_tensor(center, dtype=p.dtype)
    d = q - p
    u = (((c - p) * d).sum(-1) / (d * d).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    closest = p + u[:, None] * d
    return (closest - c).norm(dim=-1) < radius


def _clip_norm(a: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale rows of ``a`` longer than ``max_norm`` down to that length."""
    norm = a.norm(dim=-1, keepdim=True)
    return a * (max_norm / norm.clamp(min=max_norm))


def expert_demonstrations(n_demos: int = 50, seed: int = 0, task: ObstacleTask = ObstacleTask(),
                          speed: float = 0.08, waypoint_x: float = 0.6, noise: float = 0.01) -> dict:
    """``n_demos`` expert paths, each passing the obstacle on a side chosen by a fair coin.

    The expert of side ``side`` (-1 left, +1 right) heads at ``speed`` per step to a waypoint
    ``(side * waypoint_x, 0) + N(0, 0.05^2 I)`` beside the obstacle, then to the goal; each step
    gets ``N(0, noise^2 I)`` added. Same ``seed``, same demonstrations.

    Returns a dict: ``states`` a list of ``(L_i + 1, 2)`` paths, ``actions`` a list of
    ``(L_i, 2)`` displacements, ``side`` an ``(n_demos,)`` long tensor of -1 / +1.
    """
    if n_demos < 1:
        raise ValueError(f"n_demos must be >= 1, got {n_demos}")
    if not 0 < speed <= task.max_step:
        raise ValueError(f"speed must lie in (0, max_step={task.max_step}], got {speed}")
    g = torch.Generator().manual_seed(seed)
    starts = sample_start_states(n_demos, seed=seed + 10_000, task=task)
    sides = torch.randint(0, 2, (n_demos,), generator=g) * 2 - 1
    goal = torch.tensor(task.goal)
    out = {"states": [], "actions": [], "side": sides}
    for i in range(n_demos):
        waypoint = torch.tensor([sides[i].item() * waypoint_x, task.obstacle[1]]) + 0.05 * torch.randn(2, generator=g)
        s, path, acts = starts[i].clone(), [starts[i].clone()], []
        for _ in range(task.max_steps):
            target = waypoint if s[1] < waypoint[1] - 0.05 else goal
            a = target - s
            a = a * min(1.0, speed / a.norm().item()) + noise * torch.randn(2, generator=g)
            a = _clip_norm(a[None], task.max_step)[0]
            s = s + a
            path.append(s.clone())
            acts.append(a)
            if (s - goal).norm() < task.goal_radius:
                break
        out["states"].append(torch.stack(path))
        out["actions"].append(torch.stack(acts))
    return out


def demonstration_chunks(demos: dict, action_horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (state, the next ``action_horizon`` actions) from every step of every demonstration.

    Chunks running past a path's end are padded with zero displacements (stay put), as the
    episode is over there. Returns ``obs (N, 2)`` and ``actions (N, action_horizon, 2)``.
    """
    if action_horizon < 1:
        raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
    obs, chunks = [], []
    for states, actions in zip(demos["states"], demos["actions"]):
        padded = torch.cat([actions, torch.zeros(action_horizon, 2)])
        for k in range(len(actions)):
            obs.append(states[k])
            chunks.append(padded[k:k + action_horizon])
    return torch.stack(obs), torch.stack(chunks)


Policy = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def rollout(policy: Policy, starts: torch.Tensor, task: ObstacleTask = ObstacleTask(),
            n_action_steps: int | None = None) -> dict:
    """Run ``policy`` in closed loop from each start; score reaching the goal without collision.

    ``policy(states (B, 2)) -> actions (B, H, 2)`` returns a chunk of ``H`` displacements; the
    first ``n_action_steps`` (default all ``H``) are executed before the policy is asked again
    (receding horizon, as in Diffusion Policy). An episode stops at the goal or at a collision.

    Returns a dict: ``paths (B, max_steps + 1, 2)`` (held still after the episode ends),
    ``success``, ``collided``, ``reached`` ``(B,)`` bool, ``steps (B,)`` long.
    """
    s = _check_states(starts, "starts").clone()
    b = s.shape[0]
    goal = torch.tensor(task.goal)
    done = torch.zeros(b, dtype=torch.bool)
    collided, reached = done.clone(), done.clone()
    steps = torch.zeros(b, dtype=torch.long)
    paths = [s.clone()]
    chunk, k_in_chunk = None, 0
    for _ in range(task.max_steps):
        if chunk is None or k_in_chunk >= (n_action_steps or chunk.shape[1]):
            chunk = torch.as_tensor(policy(s.clone()), dtype=torch.float32)
            if chunk.ndim != 3 or chunk.shape[0] != b or chunk.shape[2] != 2:
                raise ValueError(f"the policy must return actions of shape ({b}, H, 2), got {tuple(chunk.shape)}")
            if n_action_steps is not None and not 1 <= n_action_steps <= chunk.shape[1]:
                raise ValueError(f"n_action_steps must lie in [1, H={chunk.shape[1]}], got {n_action_steps}")
            k_in_chunk = 0
        a = _clip_norm(chunk[:, k_in_chunk], task.max_step)
        k_in_chunk += 1
        nxt = (s + a).clamp(-1, 1)
        hit = segment_hits_disc(s, nxt, task.obstacle, task.obstacle_radius) & ~done
        collided |= hit
        s = torch.where(done[:, None], s, nxt)
        reached |= ((s - goal).norm(dim=-1) < task.goal_radius) & ~done & ~hit
        steps += (~done).long()
        done = done | collided | reached
        paths.append(s.clone())
        if done.all():
            break
    while len(paths) < task.max_steps + 1:
        paths.append(s.clone())
    return {"paths": torch.stack(paths, 1), "success": reached & ~collided, "collided": collided,
            "reached": reached, "steps": steps}


def passing_side(paths: torch.Tensor, task: ObstacleTask = ObstacleTask()) -> torch.Tensor:
    """On which side each path passes the obstacle: the sign of x where it crosses the obstacle's height.

    ``-1`` left, ``+1`` right, ``0`` if the path never reaches that height.
    Shapes: a list of ``(L_i, 2)`` paths or a ``(B, L, 2)`` tensor  ->  ``(B,)`` long.
    """
    sides = []
    for path in paths:
        above = (path[:, 1] >= task.obstacle[1]).nonzero()
        if len(above) == 0:
            sides.append(0)
        else:
            sides.append(1 if path[above[0, 0], 0] > task.obstacle[0] else -1)
    return torch.tensor(sides, dtype=torch.long)
