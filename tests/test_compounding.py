"""The compounding-error study: one-step rollouts, inpainted sequence sampling, the error metric."""

import numpy as np
import pytest
import torch

from tutorial_lib.experiments.compounding import (CompoundingConfig, position_errors, rollout_dynamics, sequence_condition,
                                      sequence_loss, build_sequence_net, heldout_windows, to_relative, from_relative,
                                      sample_sequences)
from tutorial_lib.agents.diffuser import make_diffusion
from tutorial_lib.agents.trajectories import LimitsNormalizer


class _ExactDeltas(torch.nn.Module):
    """A one-step 'model' that returns fixed normalised differences (for checking the rollout)."""

    def __init__(self, delta):
        super().__init__()
        self.delta = delta

    def forward(self, sa):
        return self.delta.expand(sa.shape[0], -1)


def test_rollout_feeds_predictions_back():
    scale = torch.tensor([0.5, 1.0, 2.0, 1.0])
    model = _ExactDeltas(torch.tensor([[1.0, 0.0, -1.0, 0.5]]))
    s = rollout_dynamics(model, scale, torch.zeros(2, 4), torch.zeros(2, 5, 2))
    assert s.shape == (2, 6, 4)
    assert torch.allclose(s[:, -1], 5 * torch.tensor([0.5, 0.0, -2.0, 0.5]))


def test_inpainting_writes_actions_and_start_exactly():
    a, s0 = torch.randn(3, 8, 2), torch.randn(3, 4)
    x = sequence_condition(a, s0)(torch.randn(3, 8, 6))
    assert torch.equal(x[..., :2], a) and torch.equal(x[:, 0, 2:], s0)


def test_sampling_keeps_the_conditioned_entries_after_every_step():
    cfg = CompoundingConfig(horizon=8, dim=8, dim_mults=(1, 2), n_diffusion_steps=5)
    net = build_sequence_net(cfg)
    a, s0 = torch.rand(2, 8, 2) * 2 - 1, torch.rand(2, 4) * 2 - 1
    cond = sequence_condition(a, s0)
    traj = make_diffusion(5).p_sample_loop(net, (2, 8, 6), torch.Generator().manual_seed(0), condition=cond,
                                           return_trajectory=True)
    for x in traj:
        assert torch.equal(x[..., :2], a) and torch.equal(x[:, 0, 2:], s0)
    loss = sequence_loss(cfg)(net, torch.rand(4, 8, 6) * 2 - 1, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_relative_layout_round_trip():
    x = torch.rand(3, 8, 8) * 2 - 1                                  # Push-T: 2 action + 6 state channels
    z = to_relative(x)
    assert z.shape == (3, 8, 14)
    assert torch.equal(z[:, 0, 8:], torch.zeros(3, 6))               # no displacement at t = 0
    assert torch.equal(z[:, :, 2:8], x[:, :1, 2:].expand(3, 8, 6))   # s_0 on every row
    assert z.abs().max() <= 1.0                                       # inside the sampler's clipping range
    assert torch.allclose(from_relative(z), x, atol=1e-6)


def test_relative_sampling_returns_states_with_the_exact_start():
    cfg = CompoundingConfig(task="pusht", horizon=8, dim=8, dim_mults=(1, 2), n_diffusion_steps=5, relative=True)
    net = build_sequence_net(cfg)
    a, s0 = torch.rand(2, 8, 2) * 2 - 1, torch.rand(2, 6) * 2 - 1
    cond = sequence_condition(a, s0, relative=True)
    z = cond(torch.randn(2, 8, 14))
    assert torch.equal(z[..., :2], a) and torch.equal(z[..., 2:8], s0[:, None].expand(2, 8, 6))
    s = sample_sequences(net, make_diffusion(5), s0, a, torch.Generator().manual_seed(0), relative=True)
    assert s.shape == (2, 8, 6) and torch.allclose(s[:, 0], s0)
    loss = sequence_loss(cfg)(net, torch.rand(4, 8, 8) * 2 - 1, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_position_error_is_in_maze_units():
    norm = LimitsNormalizer(torch.tensor([-1, -1, 0, 0, -5, -5.0]), torch.tensor([1, 1, 4, 4, 5, 5.0]))
    true = torch.zeros(2, 3, 4)
    pred = true.clone()
    pred[:, 2, 0] = 0.5                       # half the normalised range of x, which spans 4 units
    err = position_errors(pred, true, norm)
    assert np.allclose(err, [0, 0, 1.0])


def test_heldout_windows_come_from_another_stream():
    cfg = CompoundingConfig(horizon=16)
    with pytest.raises(ValueError, match="another seed"):
        heldout_windows(cfg, None, seed=cfg.data_seed)


def test_pusht_study_uses_play_episodes_and_holds_out_the_last():
    from tutorial_lib.experiments.compounding import pusht_transitions

    transitions, train, test = pusht_transitions(n_test_episodes=200)
    assert transitions.shape == (192_000, 8) and len(train) == 2800 and len(test) == 200
    assert train[-1, 1] == test[0, 0] and test[-1, 1] == len(transitions)
    angle = transitions[:, 6:8]
    assert np.allclose((angle ** 2).sum(1), 1.0, atol=1e-5)      # cos, sin of the block's angle
    with pytest.raises(ValueError, match="n_test_episodes"):
        pusht_transitions(n_test_episodes=3000)
