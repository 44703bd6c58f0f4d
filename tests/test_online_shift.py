"""Tests of the online-adaptation experiment (Part 5, shifting distributions): the shared return, the
three methods' mechanics and the summaries over seeds."""

import numpy as np
import pytest
import torch

from tutorial_lib.envs.obstacle2d import ObstacleTask, rollout, sample_start_states
from tutorial_lib.experiments.limitations_shift import (GRIDS, first_reaching, run_method, shift_experiment,
                                                        summarize_runs)
from tutorial_lib.experiments.online_finetuning import (GaussianPolicy, ShiftConfig, _steered_actor, episode_returns,
                                                        pretrain_gaussian, self_imitation_run)

TINY = ShiftConfig(episodes_per_round=8, max_episodes=16, n_eval=8, dp_steps_per_round=3, pretrain_steps=50,
                   ppo_epochs=1)


def _result(path, success=False, collided=False):
    path = torch.tensor(path, dtype=torch.float32)
    steps = len(path) - 1
    padded = torch.cat([path, path[-1:].expand(3, 2)])             # held still after the end, as rollout does
    return {"paths": padded[None], "steps": torch.tensor([steps]), "success": torch.tensor([success]),
            "collided": torch.tensor([collided])}


def test_return_is_the_closest_approach_plus_the_terminal_terms():
    goal = (1.0, 0.0)
    # distances 1.0 -> 0.5 -> 0.8 -> 0.2: closest approach 0.2, so R = 1.0 - 0.2
    there_and_back = _result([[0.0, 0.0], [0.5, 0.0], [0.2, 0.0], [0.8, 0.0]])
    assert episode_returns(there_and_back, goal).item() == pytest.approx(0.8, abs=1e-6)
    # moving away earns nothing (not a negative reward): the closest approach is the start
    away = _result([[0.0, 0.0], [-0.5, 0.0]])
    assert episode_returns(away, goal).item() == pytest.approx(0.0, abs=1e-6)
    assert episode_returns(_result([[0.0, 0.0], [0.95, 0.0]], success=True), goal).item() == pytest.approx(1.95, abs=1e-6)
    assert episode_returns(_result([[0.0, 0.0], [0.3, 0.0]], collided=True), goal).item() == pytest.approx(-0.7, abs=1e-6)


def test_the_steered_policy_starts_as_the_plain_diffusion_policy():
    policy = GaussianPolicy(16, zero_mean=True, init_std=1.0)
    s = torch.tensor([[0.1, -0.8], [-0.1, -0.85]])
    assert torch.equal(policy.dist(s).mean, torch.zeros(2, 16)) and torch.allclose(policy.dist(s).stddev, torch.ones(2, 16))
    act, n_action_steps, dim = _steered_actor()
    assert dim == 16 and n_action_steps == 8
    chunk = act(s, torch.zeros(2, 16))
    assert chunk.shape == (2, 8, 2)
    # the noise decides the chunk: the frozen policy maps the same noise to the same chunk, another to another
    assert torch.equal(chunk, act(s, torch.zeros(2, 16)))
    assert not torch.allclose(chunk, act(s, torch.randn(2, 16, generator=torch.Generator().manual_seed(0))))


def test_the_pretrained_gaussian_solves_the_old_task_and_not_the_shifted_one():
    cfg = ShiftConfig(pretrain_steps=400)
    policy = pretrain_gaussian(cfg)
    mean_policy = lambda s: (policy.dist(s).mean * 0.1)[:, None]       # noqa: E731
    old = rollout(mean_policy, sample_start_states(20, seed=5), ObstacleTask(), 1)
    new = rollout(mean_policy, sample_start_states(20, seed=5, task=cfg.task()), cfg.task(), 1)
    assert old["success"].float().mean() >= 0.5 and new["success"].sum() == 0


def test_self_imitation_run_trains_and_records_its_curve():
    curve = self_imitation_run(TINY, seed=0)
    assert curve["episodes"] == [0, 8, 16] and curve["grad_steps"] == [0, 3, 6]
    assert len(curve["success"]) == 3 and all(0 <= s <= 1 for s in curve["success"])
    assert curve["seconds"][0] == 0 and curve["seconds"][2] >= curve["seconds"][1] > 0


@pytest.mark.parametrize("method", ["gaussian", "steered"])
def test_ppo_runs_record_their_curves(method):
    curve = run_method(method, TINY, seed=0)
    assert curve["episodes"][:2] == [0, 8] and len(curve["success"]) == len(curve["episodes"])
    assert curve["grad_steps"][1] >= 1


def test_run_method_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        run_method("q-learning", TINY, 0)


def test_summaries_over_seeds_count_only_the_seeds_that_reached_the_target():
    cfg = ShiftConfig(episodes_per_round=50, max_episodes=200)
    fast = {"episodes": [0, 50, 100], "success": [0.0, 0.5, 0.95], "grad_steps": [0, 10, 20], "seconds": [0, 1.0, 2.0]}
    slow = {"episodes": [0, 50, 100, 150], "success": [0.0, 0.2, 0.6, 0.9], "grad_steps": [0, 10, 20, 30],
            "seconds": [0, 1.0, 2.0, 3.0]}
    never = {"episodes": [0, 50, 100, 150, 200], "success": [0.0] * 5, "grad_steps": [0, 1, 2, 3, 4],
             "seconds": [0, 1, 2, 3, 4]}
    assert first_reaching(fast, 0.9) == 2 and first_reaching(never, 0.9) is None
    s = summarize_runs([fast, slow, never], cfg)
    assert s["n_seeds"] == 3 and s["n_reached"] == 2
    assert s["episodes_to_90_per_seed"] == [100, 150, None] and s["episodes_to_90"] == 125.0
    assert s["grad_steps_to_90"] == 25.0 and s["seconds_to_90"] == 2.5
    assert s["curve_episodes"] == [0, 50, 100, 150, 200]
    # a finished run is held at its last evaluation to the budget
    assert s["curve_success_per_seed"][0] == [0.0, 0.5, 0.95, 0.95, 0.95]
    assert s["curve_success_mean"][4] == pytest.approx(np.mean([0.95, 0.9, 0.0]), abs=1e-4)
    assert summarize_runs([never], cfg)["episodes_to_90"] is None


def test_shift_experiment_applies_each_methods_settings():
    out = shift_experiment(TINY, seeds=(0,), methods=("diffusion",), settings={"diffusion": {"dp_steps_per_round": 1}})
    assert out["diffusion"]["n_seeds"] == 1 and out["new_goal"] == list(TINY.new_goal)
    assert out["diffusion"]["grad_steps_to_90_per_seed"][0] in (None, 0, 1, 2)


def test_the_grids_hold_the_defaults():
    default = ShiftConfig()
    for method, grid in GRIDS.items():
        assert any(all(getattr(default, k) == v for k, v in settings.items()) for settings in grid), method
