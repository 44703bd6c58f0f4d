"""Push-T policies: training windows, data integrity, policy output shapes, rollouts, bad input."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.pusht_policy import (ACTION_DIM, OBS_DIM, BCPolicy, DiffusionPolicy, PushTPolicyConfig, bc_loss,
                                 build_bc_net, build_diffusion_net, diffusion_policy_loss, make_windows,
                                 pusht_data)
from tutorial_lib.agents.pusht_rollout import rollout


def test_windows_are_edge_padded_inside_each_episode():
    obs = np.arange(7, dtype=np.float32)[:, None]            # two episodes: steps 0..3 and 4..6
    act = 10 + np.arange(7, dtype=np.float32)[:, None]
    wo, wa = make_windows(obs, act, np.array([4, 7]), n_obs_steps=2, horizon=4)
    assert wo.shape == (7, 2, 1) and wa.shape == (7, 4, 1)
    assert wo[0, :, 0].tolist() == [0, 0]                   # first observation repeated
    assert wa[0, :, 0].tolist() == [10, 10, 11, 12]         # chunk starts one step back (To - 1)
    assert wa[3, :, 0].tolist() == [12, 13, 13, 13]         # last action of episode 1 repeated
    assert wo[4, :, 0].tolist() == [4, 4] and wa[4, :, 0].tolist() == [14, 14, 15, 16]   # no leak across
    with pytest.raises(ValueError, match="episode_ends must increase"):
        make_windows(obs, act, np.array([4, 4, 7]), 2, 4)


def test_shipped_demonstrations_give_clean_windows():
    cfg = PushTPolicyConfig()
    data = pusht_data(cfg)
    n = len(data.obs)
    assert data.obs.shape == (n, cfg.n_obs_steps, OBS_DIM) and data.actions.shape == (n, cfg.horizon, ACTION_DIM)
    assert torch.isfinite(data.obs).all() and torch.isfinite(data.actions).all()
    assert data.obs.abs().max() <= 1 + 1e-5 and data.actions.abs().max() <= 1 + 1e-5
    assert data.n_episodes >= 200 * 0.9 and n > 10_000
    assert data.flat().shape == (n, cfg.n_obs_steps * OBS_DIM + cfg.horizon * ACTION_DIM)
    assert not data.mirrored.any()


def test_mirror_doubles_the_windows_with_reflected_copies():
    plain = pusht_data(PushTPolicyConfig())
    both = pusht_data(PushTPolicyConfig(mirror=True))
    n = len(plain.obs)
    assert len(both.obs) == 2 * n and both.n_episodes == 2 * plain.n_episodes
    assert not both.mirrored[:n].any() and both.mirrored[n:].all()
    assert torch.equal(both.step[:n], both.step[n:]) and torch.equal(both.episode[:n], both.episode[n:])
    # back in pixels, a reflected window holds the reflected actions of its original
    a = both.action_normalizer.unnormalize(both.actions[[0, n]])
    np.testing.assert_allclose(a[1].numpy(), 512.0 - a[0].numpy()[:, ::-1], atol=1e-3)
    assert both.obs.abs().max() <= 1 + 1e-5 and both.actions.abs().max() <= 1 + 1e-5


def test_config_checks():
    with pytest.raises(ValueError, match="must fit in horizon"):
        PushTPolicyConfig(n_obs_steps=2, n_action_steps=16, horizon=16)
    with pytest.raises(ValueError, match="multiple of 4"):
        PushTPolicyConfig(horizon=10, n_action_steps=4)


def _policies(cfg):
    data = pusht_data(cfg)
    torch.manual_seed(0)
    dp = DiffusionPolicy(build_diffusion_net(cfg), cfg, data.obs_normalizer, data.action_normalizer)
    bc = BCPolicy(build_bc_net(cfg), cfg, data.obs_normalizer, data.action_normalizer)
    return data, dp, bc


def test_losses_are_finite_and_policies_give_chunks_in_pixels():
    cfg = PushTPolicyConfig(widths=(8, 16, 32), time_dim=16, hidden=32, depth=2, ddim_steps=3)
    data, dp, bc = _policies(cfg)
    batch = data.flat()[:8]
    assert torch.isfinite(diffusion_policy_loss(cfg)(dp.net, batch, torch.Generator().manual_seed(0)))
    assert torch.isfinite(bc_loss(cfg)(bc.net, batch))
    obs = np.random.default_rng(0).uniform(0, 512, (3, cfg.n_obs_steps, OBS_DIM))
    for policy in (dp, bc):
        chunk = policy.predict_chunk(obs)
        assert chunk.shape == (3, cfg.horizon, ACTION_DIM) and np.isfinite(chunk).all()
        assert policy.predict_chunk(obs[0]).shape == (cfg.horizon, ACTION_DIM)
    traj = dp.denoising_trajectory(obs[0], n_samples=4)
    assert traj.shape == (cfg.ddim_steps + 1, 4, cfg.horizon, ACTION_DIM)
    with pytest.raises(ValueError, match=r"obs_history must have shape \(B, 2, 20\)"):
        dp.predict_chunk(np.zeros((3, 20)))
    bad = obs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bc.predict_chunk(bad)


def test_rollout_executes_receding_horizon_chunks():
    cfg = PushTPolicyConfig(widths=(8, 16, 32), time_dim=16, hidden=32, depth=2, ddim_steps=2)
    _, dp, _ = _policies(cfg)
    out = rollout(dp, seed=0, max_steps=20, record_chunks=True)
    assert out["steps"] == 20 and len(out["coverage"]) == 20
    assert len(out["chunks"]) == 3 and [k for k, _ in out["chunks"]] == [0, 8, 16]   # a call every Ta = 8 steps
    assert 0.0 <= out["max_coverage"] <= 1.0 and out["success"] in (True, False)
