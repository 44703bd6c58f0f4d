"""The three ways to condition a maze plan, as the Diffuser chapter measures them.

* **Guidance function** (``bonus_return``, ``MazeValueConfig``, ``GuidedPlanner``): a value network
  ``J(tau_t, t)`` learns, on the Medium maze's noisy windows, the share of a window's points that lie in
  a *bonus* disc (``BONUS``); the guided sampler (``guidance.guided_sample_loop``) tilts the shipped
  Diffuser's plans from start to goal towards it. The denoiser is not retrained.
* **Classifier-free guidance** (``MazeCFGConfig``, ``cfg_loss``, ``CFGPlanner``): a temporal U-Net
  with FiLM conditioning on where a U-Maze window *ends*, trained with that condition dropped 20% of
  the time; the start is inpainted, the goal is asked for only through the condition, with a
  guidance weight ``w``.
* **Inpainting** of via-points: ``DiffuserPlanner(via=...)`` pins positions inside the plan.

Each returns plans in the layout of ``diffuser_planner.Plan`` and is followed by the same PD tracker, so the
three can be compared on executed rollouts (``tutorial_lib.bench conditioning``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..agents.diffuser_planner import DiffuserPlanner, Plan
from ..agents.diffuser import apply_conditioning, cfg_inpainting_loss, make_diffusion, start_goal_conditions, with_mask
from ..diffusion.guidance import cfg_denoiser, guided_sample_loop, value_loss
from ..nets.conditional_unet import ConditionalUnet1D
from ..nets.temporal_value import TemporalValue
from ..agents.trajectories import ACTION_DIM, OBSERVATION_DIM, TRANSITION_DIM, LimitsNormalizer

__all__ = ["BONUS", "bonus_return", "MazeValueConfig", "build_value_net", "value_batches", "maze_value_loss", "MazeCFGConfig",
           "build_cfg_net", "cfg_loss", "maze_cfg_loss", "GuidedPlanner", "CFGPlanner", "load_value", "load_cfg", "bonus_pairs",
           "via_requests", "plan_diversity", "guidance_experiment", "cfg_experiment", "inpainting_experiment",
           "conditioning_benchmark"]

BONUS = dict(center=(1.5, 5.5), radius=0.6)
"""The Medium maze's bonus disc (``x`` down the rows, ``y`` along the columns): the middle of the
2 x 2 pocket at the top right, a dead end that shortest paths between cells outside it never enter."""


def bonus_return(positions, center=BONUS["center"], radius: float = BONUS["radius"]):
    """The share of points within ``radius`` of ``center``: ``(..., H, 2) -> (...)``, in ``[0, 1]``.

    Works on numpy arrays and torch tensors (the value network's training target).
    """
    if isinstance(positions, torch.Tensor):
        c = torch.as_tensor(center, dtype=positions.dtype, device=positions.device)
        return ((positions - c).norm(dim=-1) < radius).to(positions.dtype).mean(-1)
    positions = np.asarray(positions)
    return (np.linalg.norm(positions - np.asarray(center), axis=-1) < radius).mean(-1)


@dataclass(frozen=True)
class MazeValueConfig:
    """A value network ``J(tau_t, t)`` of the bonus return on a maze's noisy windows.

    The windows, their normaliser and the diffusion schedule are those of the layout's Diffuser
    (``horizon``, ``stride``, ``n_diffusion_steps`` must match it), so ``J`` sees what the guided
    sampler shows it: noisy windows with their first and last states inpainted.
    """

    layout: str = "medium"
    n_transitions: int = 2_000_000
    data_seed: int = 0
    split: str = "goal_exits"
    horizon: int = 64
    stride: int = 4
    n_diffusion_steps: int = 64
    schedule: str = "cosine"
    dim: int = 16
    dim_mults: tuple = (1, 2, 4)
    n_steps: int = 20_000
    batch_size: int = 64
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.995
    grad_clip: float | None = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))


def build_value_net(cfg: MazeValueConfig) -> TemporalValue:
    return TemporalValue(TRANSITION_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults)


def value_batches(cfg: MazeValueConfig, windows, device):
    """``sample_batch(B, generator) -> (x0 (B, H, 6), returns (B,))``: windows and their bonus returns."""
    windows = windows.to(device)
    lo = windows.normalizer.lo[ACTION_DIM:ACTION_DIM + 2].to(device)
    hi = windows.normalizer.hi[ACTION_DIM:ACTION_DIM + 2].to(device)

    def sample_batch(batch_size, generator):
        x0 = windows.sample_batch(batch_size, generator)
        positions = (x0[..., ACTION_DIM:ACTION_DIM + 2] + 1) / 2 * (hi - lo) + lo
        return x0, bonus_return(positions)
    return sample_batch


def maze_value_loss(cfg: MazeValueConfig, device):
    """``loss(value_net, (x0, returns), generator)``: ``guidance.value_loss`` with the window's start
    and end inpainted into its noisy version, as the guided sampler does."""
    diffusion = make_diffusion(cfg.n_diffusion_steps, cfg.schedule).to(device)

    def loss(net, batch, generator):
        x0, returns = batch
        conditions = start_goal_conditions(x0)
        return value_loss(net, diffusion, x0, returns, generator,
                          condition=lambda x: apply_conditioning(x, conditions))
    return loss


@dataclass(frozen=True)
class MazeCFGConfig:
    """A goal-conditioned trajectory model for classifier-free guidance (the goal: where a window ends).

    The windows are those of the layout's Diffuser recipe; the network is Diffusion Policy's FiLM
    U-Net (``ConditionalUnet1D``) over the ``D = 6`` transition channels, its condition
    ``[end position (2, normalised), keep flag]``, dropped with probability ``p_uncond``. The start is
    inpainted (training and sampling), as in Diffuser.
    """

    layout: str = "umaze"
    n_transitions: int = 1_000_000
    data_seed: int = 0
    split: str = "goal_exits"
    horizon: int = 32
    stride: int = 4
    n_diffusion_steps: int = 64
    schedule: str = "cosine"
    widths: tuple = (16, 64, 128)
    time_dim: int = 32
    p_uncond: float = 0.2
    n_steps: int = 40_000
    batch_size: int = 32
    lr: float = 2e-4
    ema_decay: float = 0.995
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if not 0.0 < self.p_uncond < 1.0:
            raise ValueError(f"MazeCFGConfig.p_uncond must be in (0, 1) so that the network learns both "
                             f"models, got {self.p_uncond}")


def build_cfg_net(cfg: MazeCFGConfig) -> ConditionalUnet1D:
    return ConditionalUnet1D(TRANSITION_DIM, cond_dim=3, widths=cfg.widths, time_dim=cfg.time_dim)


def cfg_loss(model, diffusion, x0: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None):
    """Diffuser's loss with the start inpainted and the end position as a droppable FiLM condition.

    ``x0: (B, H, 6)`` normalised windows; the condition is ``x0[:, -1, 2:4]``, replaced by the null
    token with probability ``p_uncond`` (``guidance.drop_condition``).
    """
    return cfg_inpainting_loss(model, diffusion, x0, {0: x0[:, 0, ACTION_DIM:]}, x0[:, -1, ACTION_DIM:ACTION_DIM + 2],
                               p_uncond, generator)


def maze_cfg_loss(cfg: MazeCFGConfig, device):
    """``loss(model, x0, generator)``: ``cfg_loss`` with the recipe's diffusion and ``p_uncond``."""
    diffusion = make_diffusion(cfg.n_diffusion_steps, cfg.schedule).to(device)
    return lambda model, x0, generator: cfg_loss(model, diffusion, x0, cfg.p_uncond, generator)


class GuidedPlanner(DiffuserPlanner):
    """``DiffuserPlanner`` (arrival at the end) whose plans are sampled with a guidance function.

    ``value_net``: a ``TemporalValue`` trained with ``maze_value_loss``; ``scale``, ``n_guide_steps``,
    ``t_stopgrad`` as in ``guidance.guided_sample_loop`` (``scale = 0`` is plain Diffuser, DDPM).
    """

    def __init__(self, model, diffusion, normalizer, horizon: int, value_net, scale: float = 0.0,
                 n_guide_steps: int = 1, t_stopgrad: int = 0, **kwargs):
        if kwargs.get("arrival", "end") != "end" or kwargs.get("ddim_steps") is not None:
            raise ValueError("GuidedPlanner samples with DDPM and inpaints the goal at the end (arrival='end')")
        super().__init__(model, diffusion, normalizer, horizon, arrival="end", **kwargs)
        self.value_net = value_net.to(self.device).eval()
        self.scale, self.n_guide_steps, self.t_stopgrad = float(scale), int(n_guide_steps), int(t_stopgrad)

    def plan(self, state, goal, horizon: int | None = None, via: dict | None = None) -> Plan:
        horizon = self.horizon if horizon is None else int(horizon)
        conditions, arrival, B = self._conditions(*self._request(state, goal), horizon, via)
        shape = (B, horizon, TRANSITION_DIM)
        x = guided_sample_loop(with_mask(self.model, conditions, shape, device=self.device), self.diffusion,
                               self.value_net, shape, self.scale, self.n_guide_steps, self.t_stopgrad,
                               condition=lambda x: apply_conditioning(x, conditions), generator=self.generator)
        return self._to_plan(x, arrival)


class CFGPlanner(DiffuserPlanner):
    """A planner whose plans come from a ``MazeCFGConfig`` model: start inpainted, goal by CFG weight ``w``.

    The plan is asked to *end* at the goal only through the condition; the tracker follows it to its
    last point, wherever that is (``arrival = H - 1``).
    """

    def __init__(self, model, diffusion, normalizer, horizon: int, weight: float = 1.0, **kwargs):
        if kwargs.get("arrival", "end") != "end":
            raise ValueError("CFGPlanner follows each plan to its end (arrival='end')")
        super().__init__(model, diffusion, normalizer, horizon, arrival="end", **kwargs)
        self.weight = float(weight)

    def plan(self, state, goal, horizon: int | None = None, via: dict | None = None) -> Plan:
        if via:
            raise ValueError("CFGPlanner takes no via-points (its model was trained with the start pinned only)")
        horizon = self.horizon if horizon is None else int(horizon)
        state, goal_state = self._request(state, goal)
        norm = self.obs_normalizer.normalize
        start = torch.as_tensor(norm(state), device=self.device)
        g = torch.as_tensor(norm(goal_state)[:2], device=self.device).expand(self.n_samples, 2)
        conditions = {0: start}
        net = cfg_denoiser(self.model, g, self.weight)
        shape = (self.n_samples, horizon, TRANSITION_DIM)
        cond = lambda x: apply_conditioning(x, conditions)  # noqa: E731
        if self.ddim_steps is None:
            x = self.diffusion.p_sample_loop(net, shape, self.generator, condition=cond)
        else:
            x = self.diffusion.ddim_sample_loop(net, shape, self.ddim_steps, generator=self.generator, condition=cond)
        return self._to_plan(x, np.full(self.n_samples, horizon - 1))


def load_value(name: str = "maze-medium-value", path=None, device=None):
    """The trained value network of a ``MazeValueConfig`` recipe (EMA weights): ``(net, config)``."""
    from ..core.recipes import load_recipe_model
    net, ckpt, cfg = load_recipe_model(name, path=path, device=device)
    return net, cfg


def load_cfg(name: str = "maze-umaze-cfg", path=None, device=None):
    """The trained CFG model: ``(model, diffusion, normalizer, config)``."""
    from ..core.recipes import load_recipe_model
    net, ckpt, cfg = load_recipe_model(name, path=path, device=device)
    return net, make_diffusion(cfg.n_diffusion_steps, cfg.schedule), \
        LimitsNormalizer.from_state_dict(ckpt["extra"]["normalizer"]), cfg


# ----------------------------------------------------------------------------- measuring the three
GUIDED = dict(kp=10.0, kd=1.0, lookahead=8)
"""Tracking settings of the guidance and classifier-free experiments: the PD law on the plan's clock,
8 steps ahead (``DiffuserPlanner``), under which they were set up; the inpainting experiment uses
the book's planner (``maze_eval.PLANNER``)."""


def _pairs_near(cells, n_pairs: int, seed: int) -> np.ndarray:
    """``(n, 2, 2)`` start/goal positions in two different cells of ``cells``, centres ``+ U(-0.1, 0.1)^2``."""
    rng = np.random.default_rng(seed)
    cells = np.asarray(cells, dtype=np.float64)
    first = rng.integers(len(cells), size=n_pairs)
    second = (first + rng.integers(1, len(cells), size=n_pairs)) % len(cells)
    return np.stack([cells[first], cells[second]], axis=1) + rng.uniform(-0.1, 0.1, size=(n_pairs, 2, 2))


def bonus_pairs(n_pairs: int = 40, seed: int = 0, max_detour: int = 5) -> np.ndarray:
    """Medium-maze start/goal pairs for the bonus experiment: both in cells outside the bonus pocket
    at most ``max_detour`` grid moves from its entrance cell ``(1, 5)``, so that a detour through
    the bonus fits in one plan (256 steps). Shape ``(n, 2, 2)``."""
    from ..envs.maze_grid import MazeGrid

    grid = MazeGrid.from_layout("medium")
    d = grid.distances_to((1, 5))
    pocket = {(1, 5), (1, 6), (2, 4), (2, 5), (2, 6)}
    cells = [c for c in grid.free_cells.tolist() if tuple(c) not in pocket and 0 <= d[tuple(c)] <= max_detour]
    return _pairs_near(cells, n_pairs, seed)


def via_requests(layout: str, n_pairs: int, seed: int, horizon: int, max_cells: int = 9, stride: int = 4,
                 steps_per_cell: float = 20.0):
    """Start/goal pairs with a via-point cell each: ``(pairs (n, 2, 2), via (n, 2), k (n,))``.

    The via cell is drawn among the free cells (not the start's or goal's) whose detour
    ``d(start, via) + d(via, goal)`` is at most ``max_cells`` grid moves; ``k`` is its plan index,
    ``d(start, via) * steps_per_cell / stride`` (about the data's pace: its waypoint controller
    covers a cell in 15 to 25 steps).
    """
    from ..envs.maze_expert import make_eval_pairs
    from ..envs.maze_grid import MazeGrid

    grid = MazeGrid.from_layout(layout)
    rng = np.random.default_rng(seed + 1000)
    pairs, vias, ks = [], [], []
    for start, goal in make_eval_pairs(layout, 4 * n_pairs, seed=seed):
        s, g = (tuple(np.round(p).astype(int)) for p in (start, goal))
        ds, dg = grid.distances_to(s), grid.distances_to(g)
        options = [c for c in grid.free_cells.tolist() if tuple(c) not in (s, g)
                   and ds[tuple(c)] + dg[tuple(c)] <= max_cells and ds[tuple(c)] > 0]
        if not options:
            continue
        c = options[rng.integers(len(options))]
        a, b = ds[tuple(c)], dg[tuple(c)]
        pairs.append((start, goal))
        vias.append(np.asarray(c, dtype=np.float64))
        ks.append(int(np.clip(round(a * steps_per_cell / stride), 1, horizon - 2)))
        if len(pairs) == n_pairs:
            break
    return np.asarray(pairs), np.asarray(vias), np.asarray(ks)


def _episodes(layout: str, planner, pairs, vias=None, ks=None, seed: int = 0) -> list[dict]:
    from .maze_eval import rollout_episode

    out = []
    for i, (start, goal) in enumerate(pairs):
        planner.via = None if vias is None else {int(ks[i]): vias[i]}
        out.append(rollout_episode(layout, planner, start, goal, seed=seed + i))
    planner.via = None
    return out


def guidance_experiment(scales=(0.0, 100.0, 300.0, 1000.0, 3000.0), n_pairs: int = 40, seed: int = 0, device=None,
                        t_stopgrad: int = 0, pairs=None) -> dict:
    """Value guidance towards the bonus on Medium: per scale, over ``bonus_pairs`` (or the ``(n, 2, 2)``
    ``pairs`` given), the mean number of steps spent in the bonus disc, the share of episodes that enter
    it, and the goal success. ``t_stopgrad``: guidance is off in the last ``t_stopgrad`` denoising steps;
    a negative scale turns the bonus into a hazard (the plans descend the value)."""
    from ..agents.diffuser import load_diffuser

    model, diffusion, normalizer, cfg = load_diffuser("maze-medium-diffuser", device=device)
    value, _ = load_value(device=device)
    pairs = bonus_pairs(n_pairs, seed) if pairs is None else np.asarray(pairs, dtype=np.float64)
    out = {}
    for scale in scales:
        planner = GuidedPlanner(model, diffusion, normalizer, cfg.horizon, value, scale=scale, stride=cfg.stride,
                                device=device, seed=seed, t_stopgrad=t_stopgrad, **GUIDED)
        eps = _episodes("medium", planner, pairs, seed=seed)
        inside = [np.linalg.norm(e["states"][:, :2] - np.asarray(BONUS["center"]), axis=1) < BONUS["radius"] for e in eps]
        out[str(scale)] = {"bonus_steps": float(np.mean([m.sum() for m in inside])),
                           "bonus_visited": float(np.mean([m.any() for m in inside])),
                           "success": float(np.mean([e["steps_to_goal"] is not None for e in eps]))}
    return {"layout": "medium", "n_pairs": len(pairs), "scales": out}


def plan_diversity(observations: np.ndarray) -> float:
    """Mean distance between two plans' positions at the same index, over all pairs of plans: ``(n, H, 4) -> float``."""
    p = observations[..., :2]
    d = np.linalg.norm(p[:, None] - p[None], axis=-1).mean(-1)          # (n, n)
    n = len(p)
    return float(d.sum() / (n * (n - 1)))


def cfg_experiment(weights=(0.0, 1.0, 2.0, 4.0, 8.0), n_pairs: int = 40, seed: int = 0, n_diversity: int = 8,
                   device=None) -> dict:
    """Classifier-free guidance on U-Maze: per weight, executed success, the distance from the plan's
    end to the goal, and the diversity of ``n_diversity`` plans per pair (``plan_diversity``)."""
    from ..envs.maze_expert import make_eval_pairs

    model, diffusion, normalizer, cfg = load_cfg(device=device)
    pairs = make_eval_pairs("umaze", n_pairs, seed=seed)
    out = {}
    for w in weights:
        planner = CFGPlanner(model, diffusion, normalizer, cfg.horizon, weight=w, stride=cfg.stride, ddim_steps=16,
                             device=device, seed=seed, **GUIDED)
        eps = _episodes("umaze", planner, pairs, seed=seed)
        many = CFGPlanner(model, diffusion, normalizer, cfg.horizon, weight=w, stride=cfg.stride, ddim_steps=16,
                          n_samples=n_diversity, device=device, seed=seed + 1, **GUIDED)
        plans = [many.plan(np.r_[s, 0.0, 0.0], g) for s, g in pairs]
        out[str(w)] = {
            "success": float(np.mean([e["steps_to_goal"] is not None for e in eps])),
            "end_error": float(np.mean([np.linalg.norm(p.observations[:, -1, :2] - g, axis=-1).mean()
                                        for p, (s, g) in zip(plans, pairs)])),
            "diversity": float(np.mean([plan_diversity(p.observations) for p in plans])),
        }
    return {"layout": "umaze", "n_pairs": n_pairs, "weights": out}


def inpainting_experiment(n_pairs: int = 40, seed: int = 0, device=None) -> dict:
    """Via-points by inpainting on Medium (the book's planner, ``maze_eval.PLANNER``): with and without the
    via-point pinned, the share of episodes passing within 0.5 of it, reaching the goal, and both."""
    from .maze_eval import make_planner

    planner = make_planner("medium", device=device, seed=seed)
    pairs, vias, ks = via_requests("medium", n_pairs, seed, planner.horizon, stride=planner.stride)
    out = {}
    for name, pinned in (("without", False), ("with", True)):
        eps = _episodes("medium", planner, pairs, vias if pinned else None, ks, seed=seed)
        passed = np.array([(np.linalg.norm(e["states"][:, :2] - v, axis=1) < 0.5).any() for e, v in zip(eps, vias)])
        reached = np.array([e["steps_to_goal"] is not None for e in eps])
        out[name] = {"via_passed": float(passed.mean()), "success": float(reached.mean()),
                     "both": float((passed & reached).mean())}
    return {"layout": "medium", "n_pairs": len(pairs), **out}


def conditioning_benchmark(n_pairs: int = 40, seed: int = 0, device=None) -> dict:
    """The three experiments, one JSON-able dict (``python -m tutorial_lib.bench conditioning``)."""
    return {"guidance": guidance_experiment(n_pairs=n_pairs, seed=seed, device=device),
            "classifier_free": cfg_experiment(n_pairs=n_pairs, seed=seed, device=device),
            "inpainting": inpainting_experiment(n_pairs=n_pairs, seed=seed, device=device)}
