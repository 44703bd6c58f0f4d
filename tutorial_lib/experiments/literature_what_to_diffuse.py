"""What is diffused, side by side on one maze: state-action plans, states only, actions only.

Three agents on U-Maze, trained on the same expert stream, run on the same random start/goal pairs
as the maze benchmark (``maze_eval``: ``make_eval_pairs("umaze", n, seed=BENCH_SEED)``, one full
episode of 300 steps per pair):

* ``state_action``: Diffuser (Janner et al. 2022), windows ``[a_t, o_t]``, goal inpainted, the plan's
  states tracked by PD (the shipped ``maze-umaze-diffuser`` with ``maze_eval.PLANNER``);
* ``state_inverse_dynamics``: Decision Diffuser's recipe (Ajay et al. 2023), states only, goal by
  classifier-free guidance, replanned every ``STATE_PLANNER["replan_every"]`` steps, the action
  from an inverse-dynamics model (``state_diffuser``, ``inverse_dynamics``);
* ``action``: Diffusion Policy's recipe (Chi et al. 2023), chunks of 16 forces given the last two
  observations and the goal, 8 executed per query (``maze_action_policy``).

Each gets what ``maze_eval`` reports for the Diffuser: ``success`` (Wilson interval),
``normalized_score`` (against the random and expert returns of the same pairs, t interval),
``d4rl_normalized_score`` (D4RL's reference returns), ``steps_to_goal``, ``n_episodes``, and the
cost on one CPU thread: ``decision_ms``, the median time of one query of the model (a plan, or a
chunk) from each pair's start, and ``step_ms``, the mean policy time per environment step over the
episodes (a query every step, every 8 steps, or only when the Diffuser's plan stalls).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..core.stats import mean_ci95
from ..envs.maze_expert import d4rl_normalized_score, evaluate_policy, make_eval_pairs
from .maze_eval import BENCH_SEED, ENV_IDS, evaluate_methods, make_planner, summarize

__all__ = ["AGENTS", "STATE_PLANNER", "TimedPolicy", "load_agents", "decision_ms", "what_to_diffuse", "bench"]

AGENTS = ("state_action", "state_inverse_dynamics", "action")
LAYOUT = "umaze"

STATE_PLANNER = dict(replan_every=4)
"""The states planner's setting, chosen on validation pairs (``VALIDATION_SEED``), never the
benchmark's. Decision Diffuser replans at every step; here a new plan every step reached the goal
in 6 of 6 validation pairs with mean return 197.2 (94.0 steps to the goal), a new plan every 4
steps (one plan point) in 10 of 10 with return 246.8 (54.2 steps), at a quarter of the cost. Why
replanning at every step arrives later was not investigated."""


class TimedPolicy:
    """Wraps a policy ``(obs, goal) -> action`` and adds up the wall time of its calls (``seconds``, ``calls``)."""

    def __init__(self, policy):
        self.policy, self.seconds, self.calls = policy, 0.0, 0

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, obs, goal):
        t0 = time.perf_counter()
        action = self.policy(obs, goal)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return action


def load_agents(states_path=None, inverse_path=None, action_path=None, device="cpu", seed: int = 0) -> dict:
    """The three agents: the shipped Diffuser, and the states and action models (shipped checkpoints,
    or the files at the given paths)."""
    from ..agents.maze_action_policy import load_action_policy
    from ..agents.state_diffuser import load_state_planner

    return {"state_action": make_planner(LAYOUT, device=device, seed=seed),
            "state_inverse_dynamics": load_state_planner(path=states_path, inverse_path=inverse_path, device=device,
                                                         seed=seed, **STATE_PLANNER),
            "action": load_action_policy(path=action_path, device=device, seed=seed)}


def _decide(agent, state: np.ndarray, goal: np.ndarray) -> None:
    """One query of the agent's model: a plan (``plan``) or a chunk (``predict_chunk``)."""
    if hasattr(agent, "predict_chunk"):
        agent.predict_chunk(np.repeat(state[None], agent.cfg.n_obs_steps, axis=0), goal)
    elif hasattr(agent, "plan"):
        agent.plan(state, goal)
    else:
        raise TypeError(f"{type(agent).__name__} has neither plan() nor predict_chunk(); cannot time a decision")


def decision_ms(agent, pairs) -> float:
    """Median wall time (ms) of one model query from each pair's start, at rest, to its goal."""
    times = []
    for start, goal in np.asarray(pairs):
        state = np.concatenate([start, [0.0, 0.0]]).astype(np.float32)
        t0 = time.perf_counter()
        _decide(agent, state, np.asarray(goal))
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def what_to_diffuse(agents: dict | None = None, n_pairs: int = 100, quick: bool = False, seed: int = BENCH_SEED,
                    timing_pairs: int = 20, threads: int | None = 1, log=None) -> dict:
    """The three agents on ``n_pairs`` U-Maze pairs (``quick``: 2), one JSON-able dict.

    ``agents``: ``{name: policy}`` for the names of ``AGENTS`` (``load_agents()`` if None).
    ``threads``: PyTorch threads during the run (1: the cost on one thread), restored after.
    Returns ``{name: {success, normalized_score, d4rl_normalized_score, steps_to_goal, n_episodes,
    ci95, decision_ms, step_ms}}`` for the three names, plus ``reference`` (the random policy's and
    the expert's entries) and ``n_pairs``.
    """
    agents = load_agents() if agents is None else agents
    missing = [name for name in AGENTS if name not in agents]
    if missing:
        raise ValueError(f"agents is missing {missing}; give a policy for each of {list(AGENTS)}")
    if quick:
        n_pairs, timing_pairs = min(n_pairs, 2), min(timing_pairs, 2)
    pairs = make_eval_pairs(LAYOUT, n_pairs, seed=seed)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        results = evaluate_methods(LAYOUT, pairs, methods=("random", "expert"), log=log)
        costs = {}
        for name in AGENTS:
            timed = TimedPolicy(agents[name])
            t0 = time.perf_counter()
            results[name] = evaluate_policy(ENV_IDS[LAYOUT], timed, pairs)
            costs[name] = {"decision_ms": round(decision_ms(agents[name], pairs[:timing_pairs]), 2),
                           "step_ms": round(1000.0 * timed.seconds / max(timed.calls, 1), 3)}
            if log is not None:
                log(f"  {LAYOUT} {name}: {results[name].summary()} ({time.perf_counter() - t0:.0f} s)")
    finally:
        torch.set_num_threads(previous)
    table = summarize(results)
    out = {}
    for name in AGENTS:
        score, half = mean_ci95(d4rl_normalized_score(LAYOUT, results[name].returns))
        entry = table[name]
        entry["d4rl_normalized_score"] = round(score, 1)
        entry["ci95"]["d4rl_normalized_score"] = round(half, 1)
        out[name] = {**entry, **costs[name]}
    out["reference"] = {"random": table["random"], "expert": table["expert"]}
    out["n_pairs"] = n_pairs
    out["layout"] = LAYOUT
    return out


def bench(quick: bool = False) -> dict:
    """``bench literature``'s ``what_to_diffuse`` key: :func:`what_to_diffuse` on the shipped models,
    100 pairs (``quick``: 2), one CPU thread."""
    return what_to_diffuse(quick=quick, log=lambda msg: print(f"[bench] {msg}", flush=True))
