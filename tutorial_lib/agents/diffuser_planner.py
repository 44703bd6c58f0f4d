"""Diffuser's planner: sample a plan from the current state to the goal (``diffuser``), then track it.

The planner then follows the planned *states* with a PD law, as Diffuser's maze2d script
(``scripts/plan_maze2d.py``) does: at step ``k`` of the plan, with reference ``r = o_{k+1}`` (after the
plan's end, its last state at rest),

    a = k_p (r_pos - pos) + k_d (r_vel - vel),    k_p = k_d = 1,

clipped to ``[-1, 1]`` by the environment. Executing the plan's own actions instead is an option
(``control="actions"``); it is reported to score far lower (normalized scores 6.3 / 13.5 / 6.3 in
maze2d U-Maze / Medium / Large, in the Diffusion Forcing paper, Chen et al. 2024).

Far and near goals. A first plan writes the goal at index ``H - 1`` whatever its distance. A goal the
ball cannot reach in ``H`` steps at the speeds in the data makes an out-of-distribution request: the
sampled path hurries and may cut corners, and the ball lags behind the plan; after ``H`` steps the PD
law keeps pulling it to the plan's last state (the goal). A near goal is reached late: the training
windows always last ``H`` steps, so the plan takes about that long (it wanders on the way). Replanning
(``replan_every``) re-inpaints the current state, corrects the drift and keeps the first plan's
arrival time; a longer planning horizon (any multiple of 4, the U-Net being convolutional; Diffuser
uses 384 in the large maze) makes room for long paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..diffusion.ddpm import GaussianDiffusion
from .diffuser import sample_plans
from .trajectories import ACTION_DIM, OBSERVATION_DIM, TRANSITION_DIM, LimitsNormalizer
from ..core.utils import get_device

__all__ = ["Plan", "DiffuserPlanner"]


@dataclass
class Plan:
    """Sampled plans in raw units: ``observations: (n, H, 4)``, ``actions: (n, H, 2)``.

    ``arrival: (n,)`` the index at which each plan was asked to be at the goal; ``chosen`` the plan
    the planner follows.
    """

    observations: np.ndarray
    actions: np.ndarray
    arrival: np.ndarray | None = None
    chosen: int = 0


class DiffuserPlanner:
    """A policy ``action = planner(obs, goal)`` that plans with Diffuser and tracks the plan.

    Plans on the first call after ``reset()``, when the goal changes, and every ``replan_every`` steps
    (``None``: open loop, plan once, Diffuser's maze2d setting). Works with
    ``maze_expert.evaluate_policy``.

    When to arrive (``arrival``). ``"end"`` is Diffuser's: the goal state, at rest, is inpainted at the
    last index ``H - 1``; ``n_samples`` plans are drawn and the first is followed. A plan always takes
    its whole horizon, so a near goal is reached late. ``"earliest"`` (for a model trained with
    ``random_conditions``) asks for the goal *position* (velocity free) at each of
    ``n_arrivals`` indices ``k`` spread over the horizon, ``n_samples`` plans each, all in one batch,
    and follows the earliest plan that is *feasible*: no step of it up to ``k`` moves faster than
    ``speed_slack`` times the fastest the data ever moved (``max_speed``, per axis). A plan asked
    to arrive too soon must hurry or jump to the pinned goal, and that is what the check catches;
    it needs no map. The slack (2 by default) tolerates the jitter of sampled plans, whose steps
    exceed the data's top speed by tens of percent, while a jump is several times faster. If no
    plan passes, the last candidate (``k = H - 1``) is followed.

    Replanning (``"end"``) keeps the deadline of the first plan: ``k`` steps after the goal was set,
    it plans over the ``H - k`` steps left (``replan_horizon``; the U-Net takes any multiple of 4).
    Replanning over ``H`` steps again would postpone the arrival at every replan: the data's windows
    always take all ``H`` steps, so such a planner chases a goal that keeps receding. With
    ``"earliest"`` every replan searches the arrival afresh over the full horizon.

    Warm start (``warm_start``, Janner et al. 2022, §5.4). A replan need not start from noise: the
    plan being followed, shifted by the points already executed (and padded with its last point),
    is a good guess. It is noised to the diffusion step ``t_w = warm_start * T`` with ``q(x_t | x_0)``
    and denoised from there, with the same share of the DDIM steps (at least one), so a replan costs
    about ``warm_start`` of a plan. The start is inpainted as usual and the goal is pinned where the
    followed plan arrives (shifted), so the deadline is kept and no arrival search is made. A replan
    made past that arrival starts cold. With or without a warm start, no replan is made once the
    followed plan has arrived and the ball is in the goal disc (``holding``): the reference is then
    the goal at rest, and a new plan from the goal to itself could only wander.

    Tracking. The planned states are followed with a PD law, as Diffuser's maze2d script does: at
    step ``j`` after planning, the reference ``r`` is the plan at time ``j + lookahead`` (Diffuser:
    ``lookahead = 1``; interpolated linearly between points when ``stride > 1``), or the arrival
    state at rest past the arrival,

        a = k_p (r_pos - pos) + k_d (r_vel - vel),   clipped to [-1, 1].

    That reference runs on the plan's clock: a ball held up at a wall corner falls behind it, the
    reference moves on around the corner, and the PD law pulls the ball into the corner, where it
    can stay. ``tracking="progress"`` indexes the plan by where the ball is instead (pure pursuit):
    the plan point the ball has reached is the nearest one to it, searched forward from the last
    one reached (at most ``2 * lookahead`` steps ahead, never back), and the reference is
    ``lookahead`` steps past it. A ball that stops stops its reference; ``replan_stalled`` then
    makes a new plan from where it is after that many steps without progress.

    Args:
        model: the trained denoiser ``f(x, t)`` (e.g. ``TemporalUnet``), in eval mode.
        diffusion: its ``GaussianDiffusion`` (``make_diffusion``).
        normalizer: ``LimitsNormalizer`` of the ``D = 6`` transition coordinates.
        horizon: planning horizon H in points (a multiple of the U-Net's ``horizon_multiple``).
        stride: environment steps between plan points (the model's training stride).
        n_samples: plans drawn per arrival candidate.
        ddim_steps: ``None`` for DDPM with every step, else DDIM with this many steps (``eta = 0``).
        arrival: ``"end"`` or ``"earliest"`` (above); ``n_arrivals`` candidates for the latter, and
            ``speed_slack`` its feasibility check's tolerance.
        kp, kd: PD gains on the position and velocity errors (Diffuser's maze2d script: 1 and 1; the
            data's waypoint controller uses 10 on the position).
        min_replan_horizon: shortest horizon of a replan (default ``H // 4``).
        control: ``"pd"`` to track the planned states, ``"actions"`` to execute the planned actions
            (stride 1 only).
        seed: seed of the sampler's generator (a planner repeats its plans after ``reset(seed)``).
        via: ``{k: (x, y)}``, positions every plan must pass at plan index ``k`` (inpainted, velocity
            free; a model trained with ``random_conditions`` has seen such pins). Used by the first
            plan for a goal only: a replan starts over at index 0.
        warm_start: ``None`` (replans start from noise) or the share of the diffusion, in ``(0, 1]``,
            that a replan re-runs from the followed plan (above).
        tracking: ``"time"`` (the plan's clock, Diffuser's) or ``"progress"`` (the nearest plan point).
        replan_stalled: with ``tracking="progress"``, plan anew after this many steps without
            progress (``None``: never).
    """

    def __init__(self, model, diffusion: GaussianDiffusion, normalizer: LimitsNormalizer, horizon: int,
                 n_samples: int = 1, ddim_steps: int | None = None, replan_every: int | None = None,
                 kp: float = 1.0, kd: float = 1.0, control: str = "pd", seed: int = 0, device=None,
                 min_replan_horizon: int | None = None, stride: int = 1, arrival: str = "end",
                 n_arrivals: int = 8, speed_slack: float = 2.0, lookahead: int = 1, via: dict | None = None,
                 warm_start: float | None = None, tracking: str = "time", replan_stalled: int | None = None):
        if control not in ("pd", "actions"):
            raise ValueError(f"control must be 'pd' (track the planned states) or 'actions', got {control!r}")
        if control == "actions" and stride != 1:
            raise ValueError(f"control='actions' needs a plan of every step (stride 1), got stride {stride}")
        if arrival not in ("end", "earliest"):
            raise ValueError(f"arrival must be 'end' (Diffuser's) or 'earliest', got {arrival!r}")
        if normalizer.dim != TRANSITION_DIM:
            raise ValueError(f"normalizer must cover the {TRANSITION_DIM} transition coordinates [a, o], "
                             f"got {normalizer.dim}")
        if replan_every is not None and not 1 <= replan_every:
            raise ValueError(f"replan_every must be None (open loop) or >= 1, got {replan_every}")
        if int(stride) < 1 or int(n_arrivals) < 1 or int(n_samples) < 1:
            raise ValueError(f"stride, n_samples and n_arrivals must be >= 1, got {stride}, {n_samples}, {n_arrivals}")
        self.device = get_device(device)
        self.model, self.diffusion = model.to(self.device).eval(), diffusion.to(self.device)
        self.normalizer, self.obs_normalizer = normalizer, normalizer.sub(ACTION_DIM, TRANSITION_DIM)
        self.horizon, self.n_samples, self.stride = int(horizon), int(n_samples), int(stride)
        self.ddim_steps, self.replan_every = ddim_steps, replan_every
        self.kp, self.kd, self.control = float(kp), float(kd), control
        self.arrival, self.n_arrivals, self.speed_slack = arrival, int(n_arrivals), float(speed_slack)
        if int(lookahead) < 1:
            raise ValueError(f"lookahead must be >= 1 step, got {lookahead}")
        self.lookahead = int(lookahead)
        if warm_start is not None and not 0.0 < float(warm_start) <= 1.0:
            raise ValueError(f"warm_start must be None or a share of the diffusion in (0, 1], got {warm_start}")
        self.warm_start = None if warm_start is None else float(warm_start)
        if tracking not in ("time", "progress"):
            raise ValueError(f"tracking must be 'time' (the plan's clock) or 'progress' (the nearest plan point), "
                             f"got {tracking!r}")
        self.tracking = tracking
        if replan_stalled is not None and (tracking != "progress" or int(replan_stalled) < 1):
            raise ValueError(f"replan_stalled (steps without progress before a new plan) needs tracking='progress' "
                             f"and >= 1, got {replan_stalled} with tracking={tracking!r}")
        self.replan_stalled = None if replan_stalled is None else int(replan_stalled)
        self.min_replan_horizon = self.horizon // 4 if min_replan_horizon is None else int(min_replan_horizon)
        vel_lo, vel_hi = normalizer.lo[ACTION_DIM + 2:].numpy(), normalizer.hi[ACTION_DIM + 2:].numpy()
        self.max_speed = np.maximum(np.abs(vel_lo), np.abs(vel_hi)).astype(np.float64)   # (2,) per axis
        self.seed, self.via = seed, via
        self.denoiser_evals = 0   # network evaluations of one plan, summed over plans (kept by reset)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan; reseed the sampler with ``seed`` (default: the constructor's)."""
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed if seed is None else seed)
        self.plan_result: Plan | None = None
        self.goal: np.ndarray | None = None
        self.k = 0          # steps taken since the current plan was made
        self.progress = 0   # with tracking="progress": the plan point the ball has reached
        self.stalled = 0    # steps since the progress last moved
        self.t_goal = 0     # steps taken since the current goal was set
        self.n_plans = 0
        self.n_warm = 0     # replans that started from the followed plan
        self.n_stalled = 0  # replans made because the ball stopped making progress

    def arrival_indices(self, horizon: int) -> np.ndarray:
        """The candidate arrival indices of ``arrival="earliest"``: ``n_arrivals`` evenly up to ``H - 1``."""
        return np.unique(np.linspace(horizon - 1, 0, self.n_arrivals, endpoint=False).round().astype(int))

    @staticmethod
    def _request(state, goal) -> tuple[np.ndarray, np.ndarray]:
        """Check a plan request: ``state: (4,)``, ``goal: (2,)`` (at rest) or ``(4,)`` -> both ``(4,) float32``."""
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        goal = np.asarray(goal, dtype=np.float32).reshape(-1)
        if state.shape != (OBSERVATION_DIM,) or goal.shape not in ((2,), (OBSERVATION_DIM,)):
            raise ValueError(f"state must be (x, y, vx, vy) and goal (x, y) or (x, y, vx, vy), got shapes "
                             f"{state.shape} and {goal.shape}")
        return state, (np.concatenate([goal, np.zeros(2, np.float32)]) if goal.shape == (2,) else goal)

    def _conditions(self, state: np.ndarray, goal_state: np.ndarray, horizon: int,
                    via: dict | None = None) -> tuple[dict, np.ndarray, int]:
        """Inpainting conditions for one plan request: ``(conditions, arrival (B,), B)``.

        ``via``: ``{k: (x, y)}`` positions the plan must pass at plan index ``k`` (velocity free);
        with ``arrival="earliest"`` only arrivals after the last via-point are candidates.
        """
        norm = self.obs_normalizer.normalize
        start = torch.as_tensor(norm(state), device=self.device)
        goal = torch.as_tensor(norm(goal_state), device=self.device)
        pins = {}
        for k, xy in (via or {}).items():
            k, xy = int(k), np.asarray(xy, dtype=np.float32).reshape(-1)
            if not 0 < k < horizon - 1 or xy.shape != (2,):
                raise ValueError(f"a via-point is {{k: (x, y)}} with 0 < k < {horizon - 1} (plan index), "
                                 f"got {{{k}: {xy.tolist()}}}")
            value = torch.as_tensor(norm(np.concatenate([xy, np.zeros(2, np.float32)])), device=self.device)
            pins[k] = torch.cat([value[:2], torch.full((2,), float("nan"), device=self.device)])
        if self.arrival == "end":
            return {0: start, **pins, horizon - 1: goal}, np.full(self.n_samples, horizon - 1), self.n_samples
        ks = self.arrival_indices(horizon)
        ks = ks[ks > max(pins, default=0)]
        arrival = np.repeat(ks, self.n_samples)                       # (B,) sorted, earliest first
        B = len(arrival)
        conditions = {0: start, **pins}
        for k in ks:
            value = torch.full((B, OBSERVATION_DIM), float("nan"), device=self.device)
            value[torch.as_tensor(arrival == k, device=self.device), :2] = goal[:2]
            conditions[int(k)] = value
        return conditions, arrival, B

    def _to_plan(self, x: torch.Tensor, arrival: np.ndarray, search: bool = True) -> Plan:
        """Sampled windows ``(B, H, 6)`` (normalised) as a ``Plan`` in raw units, its plan chosen
        (the earliest feasible with ``arrival="earliest"`` and ``search``, else the first)."""
        x = self.normalizer.unnormalize(x.float().cpu()).numpy()
        self.n_plans += 1
        plan = Plan(observations=x[..., ACTION_DIM:], actions=x[..., :ACTION_DIM], arrival=arrival)
        if self.arrival == "earliest" and search:
            ok = np.flatnonzero(self.feasible(plan.observations, arrival))
            plan.chosen = int(ok[0]) if len(ok) else len(arrival) - 1
        return plan

    def feasible(self, observations: np.ndarray, arrival: np.ndarray) -> np.ndarray:
        """Whether each plan keeps to the data's speeds up to its arrival: ``(B, H, 4), (B,) -> (B,)``.

        ``|p_{i+1} - p_i| <= speed_slack * max_speed * stride * dt`` per axis for every ``i < arrival``,
        with ``dt = 0.01`` s and ``max_speed`` the largest speed in the training data.
        """
        from ..envs.maze import DT

        step = np.abs(np.diff(observations[..., :2], axis=1))                       # (B, H - 1, 2)
        limit = self.speed_slack * self.max_speed * self.stride * DT
        before = np.arange(step.shape[1])[None, :] < np.asarray(arrival)[:, None]   # (B, H - 1)
        return ~((step > limit).any(-1) & before).any(-1)

    def plan(self, state, goal, horizon: int | None = None, via: dict | None = None) -> Plan:
        """Sample plans from ``state: (4,)`` to ``goal: (2,)`` (reached at rest) or ``(4,)``; raw units.

        The goal is inpainted as ``arrival`` says (see the class) in plans of ``horizon`` points
        (default: the planner's); ``via`` (default: the planner's ``via``) pins positions on the way.
        """
        horizon = self.horizon if horizon is None else int(horizon)
        conditions, arrival, B = self._conditions(*self._request(state, goal), horizon,
                                                  self.via if via is None else via)
        x = sample_plans(self.model, self.diffusion, conditions, (B, horizon, TRANSITION_DIM),
                         ddim_steps=self.ddim_steps, generator=self.generator)
        self.denoiser_evals += B * (self.ddim_steps or self.diffusion.n_diffusion_steps)
        return self._to_plan(x, arrival)

    def warm_plan(self, state, goal) -> Plan | None:
        """A replan from the followed plan, ``self.k`` steps into it (see the class); ``None`` when it
        would start at or past that plan's arrival (or there is no plan to start from)."""
        old = self.plan_result
        if old is None or self.warm_start is None:
            return None
        state, goal_state = self._request(state, goal)
        shift = int(round(self.k / self.stride)) if self.tracking == "time" else self.progress
        arrival = int(old.arrival[old.chosen]) - shift
        horizon = self.replan_horizon()
        if arrival < 1:
            return None
        arrival = min(arrival, horizon - 1)
        x_old = np.concatenate([old.actions[old.chosen], old.observations[old.chosen]], -1)[shift:]  # (H - shift, 6)
        x_old = np.concatenate([x_old, np.repeat(x_old[-1:], max(0, horizon - len(x_old)), 0)])[:horizon]
        x0 = torch.as_tensor(self.normalizer.normalize(x_old.astype(np.float32)), device=self.device)
        x0 = x0.expand(self.n_samples, horizon, TRANSITION_DIM)
        norm = self.obs_normalizer.normalize
        goal_value = torch.as_tensor(norm(goal_state), device=self.device)
        if self.arrival == "earliest":   # the position only, as the first plan pinned it
            goal_value = torch.cat([goal_value[:2], torch.full((2,), float("nan"), device=self.device)])
        conditions = {0: torch.as_tensor(norm(state), device=self.device), arrival: goal_value}
        T = self.diffusion.n_diffusion_steps
        t_w = max(int(round(self.warm_start * T)) - 1, 0)
        t = torch.full((self.n_samples,), t_w, device=self.device, dtype=torch.long)
        x_t = self.diffusion.q_sample(x0, t, generator=self.generator)
        steps = None if self.ddim_steps is None else max(1, int(round(self.warm_start * self.ddim_steps)))
        x = sample_plans(self.model, self.diffusion, conditions, (self.n_samples, horizon, TRANSITION_DIM),
                         ddim_steps=steps, generator=self.generator, x_start=x_t, t_start=t_w)
        self.n_warm += 1
        self.denoiser_evals += self.n_samples * (steps or t_w + 1)
        return self._to_plan(x, np.full(self.n_samples, arrival), search=False)

    def denoising_trajectory(self, state, goal, horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every intermediate sample of one ``plan`` call: ``(n_steps + 1, B, H, 4)`` observations, raw units,
        from the conditioned noise to the plans, and the arrival index of each plan ``(B,)``.

        Uses (and advances) the planner's generator like ``plan``; for figures.
        """
        horizon = self.horizon if horizon is None else int(horizon)
        conditions, arrival, B = self._conditions(*self._request(state, goal), horizon)
        traj = sample_plans(self.model, self.diffusion, conditions, (B, horizon, TRANSITION_DIM),
                            ddim_steps=self.ddim_steps, generator=self.generator, return_trajectory=True)
        # noisy samples leave [-1, 1]; clip for display so that they stay on the picture
        traj = self.normalizer.unnormalize(traj.float().cpu().clamp(-1.0, 1.0)).numpy()
        return traj[..., ACTION_DIM:], arrival

    def replan_horizon(self) -> int:
        """The horizon of a replan ``t_goal`` steps after the goal was set: the steps left, rounded up.

        ``H - t_goal / stride`` rounded up to a multiple of the network's ``horizon_multiple``, and at
        least ``min_replan_horizon``; the goal is then due when the first plan said. With
        ``arrival="earliest"``: always ``H``.
        """
        if self.arrival == "earliest":
            return self.horizon
        m = getattr(self.model, "horizon_multiple", 1)
        left = self.horizon - self.t_goal / self.stride
        return max(int(-(-left // m)) * m, self.min_replan_horizon)

    def reference(self, k: int) -> np.ndarray:
        """The state to track ``k`` steps after planning: the plan at time ``k + lookahead``
        (interpolated), or its arrival state at rest once past the arrival."""
        plan = self.plan_result
        seq, end = plan.observations[plan.chosen], int(plan.arrival[plan.chosen])
        tau = (k + self.lookahead) / self.stride
        if tau >= end:
            return np.concatenate([seq[end, :2], np.zeros(2, seq.dtype)])
        i, frac = int(tau), tau - int(tau)
        return (1 - frac) * seq[i] + frac * seq[i + 1]

    def _progress(self, obs) -> int:
        """``tracking="progress"``: the nearest point of the followed plan to ``obs``, searched from the
        last one reached up to ``2 * lookahead`` steps ahead of it (never backwards)."""
        plan = self.plan_result
        seq, end = plan.observations[plan.chosen], int(plan.arrival[plan.chosen])
        if self.k == 0:
            self.progress = 0
        hi = min(end, self.progress + max(1, -(-2 * self.lookahead // self.stride)))
        d = np.linalg.norm(seq[self.progress:hi + 1, :2] - np.asarray(obs)[:2], axis=-1)
        step = int(np.argmin(d))
        self.progress += step
        self.stalled = 0 if step > 0 or self.k == 0 else self.stalled + 1
        return self.progress

    def holding(self, obs) -> bool:
        """Whether the followed plan has arrived and the ball is in the goal disc: no replan is due then."""
        from ..envs.maze import GOAL_RADIUS

        plan = self.plan_result
        done = self.k + self.lookahead if self.tracking == "time" else self.progress * self.stride + self.lookahead
        past = done / self.stride >= int(plan.arrival[plan.chosen])
        return bool(past and np.linalg.norm(np.asarray(obs)[:2] - self.goal[:2]) <= GOAL_RADIUS)

    def __call__(self, obs, goal) -> np.ndarray:
        """``obs: (4,)``, ``goal: (2,)``  ->  ``action: (2,) float32`` in ``[-1, 1]``; plans when due (see the class)."""
        obs = np.asarray(obs, dtype=np.float64).reshape(-1)
        goal = np.asarray(goal, dtype=np.float64).reshape(-1)
        if self.plan_result is None or self.goal is None or not np.array_equal(goal, self.goal):
            self.plan_result, self.goal, self.k, self.t_goal = self.plan(obs, goal), goal.copy(), 0, 0
        elif self.replan_every is not None and self.k >= self.replan_every and not self.holding(obs):
            warm = self.warm_plan(obs, goal)
            self.plan_result = warm if warm is not None else self.plan(obs, goal, self.replan_horizon(), via={})
            self.k = 0
        elif self.replan_stalled is not None and self.stalled >= self.replan_stalled and not self.holding(obs):
            self.plan_result, self.k, self.stalled = self.plan(obs, goal, self.replan_horizon(), via={}), 0, 0
            self.n_stalled += 1
        self.t_goal += 1
        if self.control == "actions":
            actions = self.plan_result.actions[self.plan_result.chosen]
            action = actions[self.k] if self.k < len(actions) else np.zeros(2)
        else:
            r = self.reference(self.k if self.tracking == "time" else self._progress(obs) * self.stride)
            action = self.kp * (r[:2] - obs[:2]) + self.kd * (r[2:] - obs[2:])
        self.k += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)
