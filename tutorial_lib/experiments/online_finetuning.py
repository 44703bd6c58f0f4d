"""Adapting a pre-trained obstacle-task policy online, from its own episodes (Part 5, shifting distributions).

A diffusion model fits a fixed data set. In online reinforcement learning the data are the
policy's own episodes, so they move whenever the policy does, and every move means refitting.
This module measures what that costs on the book's smallest task.

**The shift.** Both policies are pre-trained on the obstacle task's 50 two-way demonstrations
(goal ``(0, 0.85)``, Chapter 2). Then the goal moves to ``ShiftConfig.new_goal``, which no
demonstration visits, and each policy adapts from its own episodes and their returns alone.

**The return** of an episode is shared by both methods:
``R = d_0 - min_t d_t + 1[success] - 1[collision]``, with ``d_t`` the distance to the new goal.
Per step it is ``r_t = m_t - m_{t+1}`` (``m_t = min_{k <= t} d_k``), plus the terminal terms. It
rewards the closest approach so far, so an episode that ends at the old goal still earns credit
for having passed near the new one.

**The methods**, on the same budget of environment episodes (rounds of ``episodes_per_round``):

- *diffusion, reward-filtered self-imitation*: run the current diffusion policy, keep the best
  ``keep_fraction`` of the round's episodes by return, add their executed action chunks to a
  buffer, and take ``dp_steps_per_round`` steps of the ordinary diffusion loss on it. This is
  filtered behaviour cloning (as in reward-weighted regression, and the self-imitation rounds of
  the literature's fine-tuning recipes); its only exploration is the sampler's noise.
- *Gaussian, policy gradient*: an MLP policy ``N(mu(s), diag sigma^2)``, pre-trained by
  regression on the first action of each chunk of the same demonstrations, ``sigma`` learned. It is
  fine-tuned with the clipped PPO objective (Schulman et al. 2017) on each round's episodes, with
  Monte-Carlo returns-to-go minus a per-time-step mean as the advantage.

After every round a policy is evaluated on ``n_eval`` fixed starts (not counted in the budget):
its success rate on the new task. :mod:`~tutorial_lib.experiments.limitations_shift` runs the comparison.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.recipes import load_pretrained
from ..core.stats import mean_ci95
from ..envs.obstacle2d import ObstacleTask, demonstration_chunks, rollout, sample_start_states
from .imitation import STATE_DIM, ACTION_DIM, DiffusionPolicy, ImitationConfig, diffusion_policy_loss, imitation_data

__all__ = ["ShiftConfig", "episode_returns", "GaussianPolicy", "pretrain_gaussian", "self_imitation_run",
           "ppo_run"]


@dataclass(frozen=True)
class ShiftConfig:
    """The shifted task, the budget and the methods' settings (the defaults: what
    ``limitations_shift.tune`` chose on its tuning seed)."""

    new_goal: tuple = (0.6, 0.55)
    episodes_per_round: int = 50
    max_episodes: int = 2000
    n_eval: int = 100
    eval_seed: int = 2
    target: float = 0.9
    # diffusion: reward-filtered self-imitation
    keep_fraction: float = 0.05
    buffer_rounds: int = 1
    dp_steps_per_round: int = 100
    dp_lr: float = 3e-4
    dp_batch: int = 256
    # Gaussian: PPO
    init_std: float = 0.5
    pretrain_steps: int = 2000
    ppo_epochs: int = 10
    ppo_minibatch: int = 512
    ppo_clip: float = 0.2
    ppo_lr: float = 1e-2            # the Gaussian policy
    steer_lr: float = 1e-2          # the noise-space policy

    def task(self) -> ObstacleTask:
        return ObstacleTask(goal=tuple(self.new_goal))


def _returns_parts(paths: torch.Tensor, steps: torch.Tensor, success: torch.Tensor, collided: torch.Tensor,
                   goal) -> torch.Tensor:
    """Per-step rewards ``(B, T)``: improvement of the closest approach, terminal terms on the last step."""
    d = (paths - torch.as_tensor(goal, dtype=paths.dtype)).norm(dim=-1)          # (B, T + 1)
    m = torch.cummin(d, dim=1).values
    r = m[:, :-1] - m[:, 1:]
    t = torch.arange(r.shape[1])[None]
    r = r * (t < steps[:, None])
    last = (steps - 1).clamp(min=0)
    r[torch.arange(len(r)), last] += success.float() - collided.float()
    return r


def episode_returns(result: dict, goal) -> torch.Tensor:
    """``R`` of each episode of an ``obstacle2d.rollout`` result (see the module docstring): ``(B,)``."""
    return _returns_parts(result["paths"], result["steps"], result["success"], result["collided"], goal).sum(1)


def _record(curve: dict, episodes: int, grad_steps: int, seconds: float, success: float) -> None:
    """Append one evaluation to a run's curve."""
    curve["episodes"].append(episodes)
    curve["grad_steps"].append(grad_steps)
    curve["seconds"].append(round(seconds, 2))
    curve["success"].append(success)


def _executed(result: dict, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(result["steps"][b])
    states = result["paths"][b, :n + 1]
    return states, states[1:] - states[:-1]


# ----------------------------------------------------------------------------------------------
# diffusion policy, reward-filtered self-imitation


def _load_diffusion_policy():
    net, ckpt = load_pretrained("motivation-diffusion-policy")
    return copy.deepcopy(net), ImitationConfig(**ckpt["config"])


def _evaluate(policy, cfg: ShiftConfig, n_action_steps) -> float:
    task = cfg.task()
    starts = sample_start_states(cfg.n_eval, seed=cfg.eval_seed, task=task)
    return rollout(policy, starts, task, n_action_steps)["success"].float().mean().item()


def self_imitation_run(cfg: ShiftConfig, seed: int = 0, log=None) -> dict:
    """Fine-tune the shipped obstacle diffusion policy on the shifted task; returns the curve.

    ``{"episodes": [...], "success": [...], "grad_steps", "seconds": [...]}``: success on the
    evaluation starts before training (0 episodes) and after each round.
    """
    torch.manual_seed(seed)
    net, icfg = _load_diffusion_policy()
    task = cfg.task()
    gen = torch.Generator().manual_seed(seed)
    loss_fn = diffusion_policy_loss(icfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.dp_lr)
    policy = DiffusionPolicy(net, icfg, task.max_step, generator=torch.Generator().manual_seed(10_000 + seed))

    def evaluate():
        policy.generator.manual_seed(cfg.eval_seed)
        out = _evaluate(policy, cfg, icfg.n_action_steps)
        policy.generator.manual_seed(10_000 + seed + len(curve["episodes"]))
        return out

    curve = {"episodes": [0], "success": [], "grad_steps": [0], "seconds": [0.0]}
    curve["success"].append(evaluate())
    buffer, spent, steps = [], 0.0, 0
    n_rounds = cfg.max_episodes // cfg.episodes_per_round
    for r in range(n_rounds):
        t0 = time.perf_counter()
        starts = sample_start_states(cfg.episodes_per_round, seed=100_000 * (seed + 1) + r, task=task)
        net.eval()
        result = rollout(policy, starts, task, icfg.n_action_steps)
        ret = episode_returns(result, task.goal)
        keep = torch.argsort(ret, descending=True)[:max(1, int(round(cfg.keep_fraction * len(ret))))]
        demos = {"states": [], "actions": []}
        for b in keep.tolist():
            s, a = _executed(result, b)
            if len(a):
                demos["states"].append(s)
                demos["actions"].append(a)
        obs, chunks = demonstration_chunks(demos, icfg.action_horizon)
        buffer = (buffer + [torch.cat([obs, chunks.flatten(1) / task.max_step], 1)])[-cfg.buffer_rounds:]
        data = torch.cat(buffer)
        net.train()
        for _ in range(cfg.dp_steps_per_round):
            idx = torch.randint(0, len(data), (cfg.dp_batch,), generator=gen)
            loss = loss_fn(net, data[idx], gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        steps += cfg.dp_steps_per_round
        spent += time.perf_counter() - t0
        _record(curve, (r + 1) * cfg.episodes_per_round, steps, spent, evaluate())
        if log is not None:
            log(f"  diffusion seed {seed} round {r + 1}: mean return {ret.mean():.3f}, eval success {curve['success'][-1]:.2f}")
        if curve["success"][-1] >= cfg.target:
            break
    return curve


# ----------------------------------------------------------------------------------------------
# Gaussian MLP policy, PPO


class GaussianPolicy(nn.Module):
    """``u ~ N(mu(s), diag exp(log_std)^2)``: a Gaussian over a ``dim``-dimensional decision.

    For the Gaussian baseline ``u`` is the action in units of ``max_step`` (``dim = 2``, one
    action per decision); for noise-space steering it is the initial noise of a frozen diffusion
    policy (``dim = 2 H``, a chunk per decision). ``zero_mean`` starts ``mu`` at 0 (the steered
    diffusion policy then starts as the plain one). Shapes: ``s (B, 2)  ->  mu (B, dim)``.
    """

    def __init__(self, dim: int = ACTION_DIM, hidden: int = 128, depth: int = 3, init_std: float = 0.5,
                 zero_mean: bool = False):
        super().__init__()
        layers, width = [], STATE_DIM
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.mu = nn.Sequential(*layers, nn.Linear(width, dim))
        if zero_mean:
            nn.init.zeros_(self.mu[-1].weight)
            nn.init.zeros_(self.mu[-1].bias)
        self.log_std = nn.Parameter(torch.full((dim,), float(np.log(init_std))))

    def dist(self, s: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mu(s), self.log_std.exp())


def pretrain_gaussian(cfg: ShiftConfig, seed: int = 0) -> GaussianPolicy:
    """Regress ``mu`` on the first action of every demonstration chunk (the same 50 demonstrations)."""
    torch.manual_seed(seed)
    icfg = ImitationConfig()
    data = imitation_data(icfg)
    s, a = data[:, :STATE_DIM], data[:, STATE_DIM:STATE_DIM + ACTION_DIM]
    policy = GaussianPolicy(ACTION_DIM, icfg.hidden, icfg.depth, cfg.init_std)
    opt = torch.optim.Adam(policy.mu.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.pretrain_steps):
        idx = torch.randint(0, len(s), (256,), generator=gen)
        loss = ((policy.mu(s[idx]) - a[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy


def _decision_rollout(policy: GaussianPolicy, act, n_action_steps: int, starts, task, gen, sample: bool = True):
    """Roll out decisions ``u ~ policy`` mapped to chunks by ``act(s, u)``; returns the roll-out, the
    decision states ``(B, K, 2)`` and decisions ``(B, K, dim)``."""
    raw, states = [], []

    @torch.no_grad()
    def chunk(s):
        d = policy.dist(s)
        u = d.mean if not sample else d.mean + d.stddev * torch.randn(d.mean.shape, generator=gen)
        raw.append(u)
        states.append(s)
        return act(s, u)
    result = rollout(chunk, starts, task, n_action_steps)
    return result, torch.stack(states, 1), torch.stack(raw, 1)


def _gaussian_actor(max_step: float):
    return (lambda s, u: (u * max_step)[:, None]), 1


def _steered_actor():
    """A frozen copy of the shipped obstacle diffusion policy, sampled from the given noise."""
    net, icfg = _load_diffusion_policy()
    diffusion = DiffusionPolicy(net, icfg).diffusion

    def act(s, u):
        a = diffusion.ddim_sample_loop(net.bind(s), (s.shape[0], net.dim), icfg.ddim_steps, x_T=u)
        return a.view(-1, icfg.action_horizon, ACTION_DIM) * ObstacleTask().max_step
    return act, icfg.n_action_steps, net.dim


def ppo_run(cfg: ShiftConfig, seed: int = 0, steer: bool = False, log=None) -> dict:
    """PPO on the shifted task; returns the curve (as :func:`self_imitation_run`; evaluation takes
    the mean decision).

    ``steer=False``: the pre-trained Gaussian policy over actions. ``steer=True``: a Gaussian over
    the initial noise of the frozen diffusion policy (DSRL's idea, Wagenmaker et al. 2025), one
    decision per executed chunk, starting at ``N(0, I)``; the reward of a decision is the sum of
    its steps' rewards.
    """
    task = cfg.task()
    if steer:
        act, n_action_steps, dim = _steered_actor()
        torch.manual_seed(seed)
        policy = GaussianPolicy(dim, init_std=1.0, zero_mean=True)
    else:
        policy = pretrain_gaussian(cfg, seed)
        act, n_action_steps = _gaussian_actor(task.max_step)
    gen = torch.Generator().manual_seed(20_000 + seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.steer_lr if steer else cfg.ppo_lr)
    eval_starts = sample_start_states(cfg.n_eval, seed=cfg.eval_seed, task=task)

    def evaluate():
        result = _decision_rollout(policy, act, n_action_steps, eval_starts, task, gen, sample=False)[0]
        return result["success"].float().mean().item()

    curve = {"episodes": [0], "success": [evaluate()], "grad_steps": [0], "seconds": [0.0]}
    spent, steps = 0.0, 0
    for r in range(cfg.max_episodes // cfg.episodes_per_round):
        t0 = time.perf_counter()
        starts = sample_start_states(cfg.episodes_per_round, seed=100_000 * (seed + 1) + r, task=task)
        result, s, u = _decision_rollout(policy, act, n_action_steps, starts, task, gen)
        rew = _returns_parts(result["paths"], result["steps"], result["success"], result["collided"], task.goal)
        K = s.shape[1]
        rew = torch.nn.functional.pad(rew, (0, K * n_action_steps - rew.shape[1]))[:, :K * n_action_steps]
        rew = rew.view(len(rew), K, n_action_steps).sum(-1)                      # (B, K) per decision
        valid = torch.arange(K)[None] * n_action_steps < result["steps"][:, None]
        rtg = torch.flip(torch.cumsum(torch.flip(rew, [1]), 1), [1])
        base = (rtg * valid).sum(0) / valid.sum(0).clamp(min=1)
        adv = (rtg - base)[valid]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        s_v, u_v = s[valid], u[valid]
        with torch.no_grad():
            old_logp = policy.dist(s_v).log_prob(u_v).sum(-1)
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(len(s_v), generator=gen)
            for i in range(0, len(perm), cfg.ppo_minibatch):
                j = perm[i:i + cfg.ppo_minibatch]
                ratio = (policy.dist(s_v[j]).log_prob(u_v[j]).sum(-1) - old_logp[j]).exp()
                loss = -torch.min(ratio * adv[j], ratio.clamp(1 - cfg.ppo_clip, 1 + cfg.ppo_clip) * adv[j]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
        spent += time.perf_counter() - t0
        _record(curve, (r + 1) * cfg.episodes_per_round, steps, spent, evaluate())
        if log is not None:
            log(f"  {'steered' if steer else 'gaussian'} seed {seed} round {r + 1}: mean return {rew.sum(1).mean():.3f}, "
                f"std {policy.log_std.exp().mean():.3f}, eval success {curve['success'][-1]:.2f}")
        if curve["success"][-1] >= cfg.target:
            break
    return curve
