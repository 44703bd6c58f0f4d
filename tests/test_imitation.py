"""Behaviour cloning and the diffusion policy: shapes, and what each learns from two-way data."""

import dataclasses

import pytest
import torch

from tutorial_lib.experiments.imitation import (BCPolicy, DiffusionPolicy, ImitationConfig, imitation_data, train_bc,
                                    train_diffusion_policy)
from tutorial_lib.nets import ConditionalTimeMLP

SMALL = ImitationConfig(hidden=64, depth=2, n_steps=600, batch_size=256)


def test_conditional_mlp_shapes_and_errors():
    net = ConditionalTimeMLP(dim=16, cond_dim=2, hidden=32, depth=2)
    x, t, c = torch.randn(5, 16), torch.randint(0, 50, (5,)), torch.randn(5, 2)
    assert net(x, t, c).shape == (5, 16)
    assert net.bind(c)(x, t).shape == (5, 16)
    # the condition changes the output
    assert not torch.allclose(net(x, t, c), net(x, t, c + 1))
    with pytest.raises(ValueError, match=r"cond must have shape \(5, 2\)"):
        net(x, t, torch.randn(4, 2))


def test_policy_shapes():
    bc = BCPolicy(action_horizon=8, hidden=32, depth=2)
    assert bc(torch.randn(7, 2)).shape == (7, 8, 2)
    net = ConditionalTimeMLP(dim=16, cond_dim=2, hidden=32, depth=2)
    policy = DiffusionPolicy(net, ImitationConfig(ddim_steps=3))
    a = policy(torch.randn(7, 2))
    assert a.shape == (7, 8, 2)
    assert a.abs().max() <= 0.1 + 1e-6, "clipped samples times max_step stay within one step"
    with pytest.raises(ValueError, match=r"states must have shape \(B, 2\)"):
        policy(torch.randn(7, 3))


def test_recipes_build_the_policies():
    from tutorial_lib.core.recipes import get_recipe
    cfg = ImitationConfig(hidden=32, depth=1)
    assert isinstance(get_recipe("motivation-bc").build_model(cfg), BCPolicy)
    assert isinstance(get_recipe("motivation-diffusion-policy").build_model(cfg), ConditionalTimeMLP)


def test_imitation_data_layout():
    data = imitation_data(ImitationConfig(n_demos=4, action_horizon=8))
    assert data.shape[1] == 2 + 16
    assert data[:, 2:].abs().max() <= 1.0 + 1e-6, "actions are scaled by max_step into [-1, 1]"


def _first_lateral(actions: torch.Tensor) -> torch.Tensor:
    return actions[:, :4, 0].sum(1)  # sideways distance covered by the first four steps


def test_bc_averages_the_two_ways_and_diffusion_keeps_both():
    starts = torch.tensor([[0.0, -0.85]]).expand(200, 2)
    bc = train_bc(SMALL).ema_model
    with torch.no_grad():
        first = bc(starts[:1])[:, :4].sum(1)[0]
    # the experts move ~0.2 sideways and ~0.25 up in four steps; the mean of both ways only goes up
    assert first[1].item() > 0.15, "BC should have learnt to move towards the goal"
    assert first[0].abs().item() < 0.08, "BC should average the two ways into going straight"
    net = train_diffusion_policy(dataclasses.replace(SMALL, n_steps=1500)).ema_model
    policy = DiffusionPolicy(net, SMALL, generator=torch.Generator().manual_seed(0))
    chunks = policy(starts)
    assert (chunks[:, :4, 1].sum(1) > 0.15).float().mean() > 0.8, "samples should move up like the experts"
    side = _first_lateral(chunks)
    left, right = (side < -0.1).float().mean().item(), (side > 0.1).float().mean().item()
    assert left > 0.2 and right > 0.2, f"both ways should be sampled, got left {left}, right {right}"
