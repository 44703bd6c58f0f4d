"""Push-T policies: training windows, data integrity, policy output shapes, rollouts, bad input."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.pusht_policy import (ACTION_DIM, OBS_DIM, BCPolicy, DiffusionPolicy, PushTPolicyConfig, bc_loss,
                                 build_bc_net, build_diffusion_net, diffusion_policy_loss, make_diffusion,
                                 make_windows, PushTData, pusht_batches, pusht_data, pusht_extra)
from tutorial_lib.agents.trajectories import LimitsNormalizer
from tutorial_lib.agents.pusht_rollout import evaluate, rollout
from tutorial_lib.core.stats import mean_ci95, wilson_ci95
from tutorial_lib.envs.pusht import GOAL_POSE, PushTEnv
from tutorial_lib.envs.pusht_geometry import coverage


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


def test_every_window_of_an_episode_ends_at_its_own_step():
    obs = np.arange(7, dtype=np.float32)[:, None]            # two episodes: steps 0..3 and 4..6
    act = 10 + np.arange(7, dtype=np.float32)[:, None]
    wo, wa = make_windows(obs, act, np.array([4, 7]), n_obs_steps=2, horizon=4)
    assert wo[:, :, 0].tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [4, 4], [4, 5], [5, 6]]   # o[t-1], o[t]
    assert wa[6, :, 0].tolist() == [15, 16, 16, 16]


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


def test_demonstration_windows_keep_the_successful_episodes_or_all_of_them():
    from tutorial_lib.core.assets import data_dir
    from tutorial_lib.envs.pusht_demos import load_demonstrations

    demos = load_demonstrations(str(data_dir() / PushTPolicyConfig().demos))
    ends, success = demos["episode_ends"], demos["episode_success"].astype(bool)
    lengths = np.diff(np.concatenate([[0], ends]))
    assert 0 < (~success).sum() < len(ends)                            # the file has failed episodes to drop
    kept, everything = pusht_data(PushTPolicyConfig()), pusht_data(PushTPolicyConfig(successful_only=False))
    assert kept.n_episodes == success.sum() and len(kept.obs) == lengths[success].sum()
    assert set(kept.episode.tolist()) == set(np.flatnonzero(success).tolist())
    assert everything.n_episodes == len(ends) and len(everything.obs) == ends[-1]
    assert set(everything.episode.tolist()) == set(range(len(ends)))  # the last episode included


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


def test_config_bounds_are_inclusive_and_widths_become_a_tuple():
    cfg = PushTPolicyConfig(widths=[8, 16, 32], n_obs_steps=2, n_action_steps=15, horizon=16)   # chunk[1:16] fits
    assert cfg.widths == (8, 16, 32) and isinstance(cfg.widths, tuple)
    assert cfg == PushTPolicyConfig(widths=(8, 16, 32), n_obs_steps=2, n_action_steps=15, horizon=16)
    PushTPolicyConfig(n_obs_steps=1, n_action_steps=1)                                          # the smallest
    for bad in (dict(n_obs_steps=0), dict(n_action_steps=0)):
        kw = dict(n_obs_steps=2, n_action_steps=8) | bad
        with pytest.raises(ValueError, match=rf"^n_obs_steps and n_action_steps must be >= 1, got "
                                             rf"{kw['n_obs_steps']}, {kw['n_action_steps']}$"):
            PushTPolicyConfig(**kw)
    with pytest.raises(ValueError, match=r"^the executed actions chunk\[1:17\] must fit in horizon = 16$"):
        PushTPolicyConfig(n_obs_steps=2, n_action_steps=16, horizon=16)
    PushTPolicyConfig(widths=(8, 16, 32, 64), horizon=16)          # 4 widths: a multiple of 2 ** 3 = 8
    with pytest.raises(ValueError, match=r"^horizon = 12 must be a multiple of 8 for widths \(8, 16, 32, 64\)$"):
        PushTPolicyConfig(widths=(8, 16, 32, 64), horizon=12, n_action_steps=8)
    PushTPolicyConfig(n_diffusion_steps=5, ddim_steps=1)
    PushTPolicyConfig(n_diffusion_steps=5, ddim_steps=5)              # DDIM on every step is allowed
    for ddim_steps in (0, 6):
        with pytest.raises(ValueError, match=rf"^ddim_steps must be in \[1, n_diffusion_steps\], got {ddim_steps}$"):
            PushTPolicyConfig(n_diffusion_steps=5, ddim_steps=ddim_steps)


def _policies(cfg):
    data = pusht_data(cfg)
    torch.manual_seed(0)
    dp = DiffusionPolicy(build_diffusion_net(cfg), cfg, data.obs_normalizer, data.action_normalizer)
    bc = BCPolicy(build_bc_net(cfg), cfg, data.obs_normalizer, data.action_normalizer)
    return data, dp, bc


# ----------------------------------------------------------------------------- stubs with known outputs
# Normalisers with a different range per coordinate, so that a unit mix-up (normalized vs pixels, obs vs
# action range, x vs y) shows in the numbers.
OBS_LO, OBS_HI = np.linspace(10.0, 60.0, OBS_DIM), np.linspace(300.0, 500.0, OBS_DIM)
ACT_LO, ACT_HI = np.array([20.0, 40.0]), np.array([480.0, 360.0])
SMALL = dict(widths=(8, 16, 32), time_dim=16, hidden=32, depth=2, ddim_steps=3)


def _normalizers():
    return LimitsNormalizer(OBS_LO, OBS_HI), LimitsNormalizer(ACT_LO, ACT_HI)


def _target_chunk(o_flat, cfg):
    """The normalized chunk the stubs below produce for normalized, flattened observations ``(B, To * 20)``:
    ``0.9 * o[:, :H * 2]`` (inside [-1, 1] when the observations are inside the normaliser's range)."""
    return 0.9 * o_flat[:, : cfg.horizon * ACTION_DIM].reshape(-1, cfg.horizon, ACTION_DIM)


class StubBCNet(torch.nn.Module):
    """A BC "network" whose output is known: ``_target_chunk`` of its input, flattened; it records its inputs."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.seen = cfg, []
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, o):
        self.seen.append(o.clone())
        return _target_chunk(o, self.cfg).flatten(1)


class OracleNoiseNet(torch.nn.Module):
    """An epsilon-predictor that knows the clean chunk: ``eps = (x_t - sqrt(abar_t) a_0) / sqrt(1 - abar_t)`` with
    ``a_0 = _target_chunk(cond)``, so every DDIM step's x0-estimate is ``a_0`` and the sampler returns ``a_0``."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.diffusion = cfg, make_diffusion(cfg)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond):
        a0 = _target_chunk(cond, self.cfg)
        a = self.diffusion.sqrt_alphas_cumprod[t].reshape(-1, 1, 1)
        b = self.diffusion.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1)
        return (x - a * a0) / b

    def bind(self, cond):
        return lambda x, t: self(x, t, cond)


def _pixels(normalized, lo, hi):
    """``lo + (x + 1) (hi - lo) / 2``, written out here rather than taken from the library."""
    return lo + (np.asarray(normalized, np.float64) + 1.0) * (hi - lo) / 2.0


def _observations(n, cfg, seed=0):
    """``n`` observation histories in pixels, inside the observation normaliser's range, and their normalized form."""
    z = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, cfg.n_obs_steps, OBS_DIM))
    return _pixels(z, OBS_LO, OBS_HI).astype(np.float32), z


@pytest.mark.parametrize("kind", ["bc", "diffusion"])
def test_policies_return_their_chunks_in_pixels(kind):
    """A stub network whose normalized output is known: the policy must return it mapped to pixels, and the
    network must have seen the observations normalized."""
    cfg = PushTPolicyConfig(**SMALL)
    if kind == "bc":
        net = StubBCNet(cfg)
        policy = BCPolicy(net, cfg, *_normalizers())
    else:
        net = OracleNoiseNet(cfg)
        policy = DiffusionPolicy(net, cfg, *_normalizers(), trace=False)
    obs, z = _observations(3, cfg)
    expected = _pixels(0.9 * z.reshape(3, -1)[:, : cfg.horizon * ACTION_DIM].reshape(3, cfg.horizon, ACTION_DIM),
                       ACT_LO, ACT_HI)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (3, cfg.horizon, ACTION_DIM)
    np.testing.assert_allclose(chunk, expected, rtol=0, atol=2e-3)       # pixels: errors of ~1e-3 px at most
    np.testing.assert_allclose(policy.predict_chunk(obs[1]), expected[1], rtol=0, atol=2e-3)   # one history
    if kind == "bc":
        np.testing.assert_allclose(net.seen[0].numpy(), z.reshape(3, -1), rtol=0, atol=1e-5)
    else:
        traj = policy.denoising_trajectory(obs[2], n_samples=4)
        assert traj.shape == (cfg.ddim_steps + 1, 4, cfg.horizon, ACTION_DIM)
        np.testing.assert_allclose(traj[-1], np.broadcast_to(expected[2], traj[-1].shape), rtol=0, atol=2e-3)
        assert np.abs(traj[0] - traj[-1]).max() > 10.0                  # it starts from noise, not from the answer


def test_diffusion_policy_noise_comes_from_its_generator_only():
    """Two policies with generators of the same seed return the same chunks whatever the global RNG does."""
    cfg = PushTPolicyConfig(**SMALL)
    obs, _ = _observations(2, cfg)
    chunks = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        net = build_diffusion_net(cfg).eval()                 # the same weights for both
        policy = DiffusionPolicy(net, cfg, *_normalizers(), generator=torch.Generator().manual_seed(5), trace=False)
        torch.manual_seed(global_seed)
        chunks.append(policy.predict_chunk(obs))
    np.testing.assert_array_equal(chunks[0], chunks[1])
    # without a generator: its own, seeded 0, whatever the global RNG does
    unseeded = []
    for global_seed in (1, 2):
        policy = DiffusionPolicy(net, cfg, *_normalizers(), trace=False)
        torch.manual_seed(global_seed)
        unseeded.append(policy.predict_chunk(obs))
    seeded0 = DiffusionPolicy(net, cfg, *_normalizers(), generator=torch.Generator().manual_seed(0), trace=False)
    np.testing.assert_array_equal(unseeded[0], seeded0.predict_chunk(obs))
    np.testing.assert_array_equal(unseeded[1], unseeded[0])


def test_policies_reject_bad_observations():
    cfg = PushTPolicyConfig(**SMALL)
    dp = DiffusionPolicy(OracleNoiseNet(cfg), cfg, *_normalizers(), trace=False)
    bc = BCPolicy(StubBCNet(cfg), cfg, *_normalizers())
    with pytest.raises(ValueError, match=r"obs_history must have shape \(B, 2, 20\)"):
        dp.predict_chunk(np.zeros((3, 20)))
    bad, _ = _observations(3, cfg)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bc.predict_chunk(bad)


def _synthetic_batch(cfg, n=64, seed=0):
    """Flat windows whose normalized actions are a known function of the observations (``_target_chunk``)."""
    o = torch.rand(n, cfg.n_obs_steps * OBS_DIM, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.cat([o, _target_chunk(o, cfg).flatten(1)], dim=1)


def test_diffusion_policy_loss_is_the_noise_regression_error():
    """An oracle that returns the true noise scores 0; one that predicts no noise scores E[eps^2] = 1."""
    cfg = PushTPolicyConfig(**SMALL)
    batch = _synthetic_batch(cfg, n=512)
    loss = diffusion_policy_loss(cfg)
    assert loss(OracleNoiseNet(cfg), batch, torch.Generator().manual_seed(0)).item() < 1e-8

    class Zero(OracleNoiseNet):
        def forward(self, x, t, cond):
            return torch.zeros_like(x)

    assert loss(Zero(cfg), batch, torch.Generator().manual_seed(0)).item() == pytest.approx(1.0, abs=0.05)


def test_diffusion_policy_loss_draws_its_noise_from_the_given_generator_only():
    """The loss of a net that predicts no noise is the mean square of the drawn noise: the same generator seed gives
    the same loss whatever the global RNG does, and another seed another loss."""
    cfg = PushTPolicyConfig(**SMALL)
    batch = _synthetic_batch(cfg, n=8)

    class Zero(OracleNoiseNet):
        def forward(self, x, t, cond):
            return torch.zeros_like(x)

    loss = diffusion_policy_loss(cfg)
    torch.manual_seed(1)
    first = loss(Zero(cfg), batch, torch.Generator().manual_seed(0)).item()
    torch.manual_seed(2)
    assert loss(Zero(cfg), batch, torch.Generator().manual_seed(0)).item() == first
    assert loss(Zero(cfg), batch, torch.Generator().manual_seed(3)).item() != first


def _tiny_data(cfg, n=5):
    """A ``PushTData`` of ``n`` windows numbered 0 .. n - 1 in every entry (for the recipe's batches and extras)."""
    obs = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, cfg.n_obs_steps, OBS_DIM).contiguous()
    actions = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, cfg.horizon, ACTION_DIM).contiguous()
    return PushTData(obs, actions, *_normalizers(), n_episodes=1, step=torch.arange(n),
                     episode=torch.zeros(n, dtype=torch.long), mirrored=torch.zeros(n, dtype=torch.bool))


def test_recipe_batches_are_rows_of_the_flat_windows_and_the_checkpoint_keeps_both_normalisers():
    cfg = PushTPolicyConfig(**SMALL)
    data = _tiny_data(cfg)
    batch = pusht_batches(cfg, data, "cpu")(64, torch.Generator().manual_seed(0))
    assert batch.shape == (64, cfg.n_obs_steps * OBS_DIM + cfg.horizon * ACTION_DIM)
    rows = data.flat()
    assert all(torch.equal(b, rows[int(b[0])]) for b in batch)              # each a whole row of the data
    assert set(batch[:, 0].long().tolist()) == set(range(5))                 # drawn from every window
    extra = pusht_extra(cfg, data)
    f32 = lambda v: np.float32(v).tolist()                                     # the normalisers keep float32
    assert extra == {"obs_normalizer": {"lo": f32(OBS_LO), "hi": f32(OBS_HI)},
                     "action_normalizer": {"lo": f32(ACT_LO), "hi": f32(ACT_HI)}}


def test_bc_loss_is_the_mean_squared_error_of_the_chunk():
    cfg = PushTPolicyConfig(**SMALL)
    batch = _synthetic_batch(cfg)
    assert bc_loss(cfg)(StubBCNet(cfg), batch).item() < 1e-12

    class Off(StubBCNet):
        def forward(self, o):
            out = super().forward(o)
            return out + torch.where(torch.arange(out.shape[1]) % 2 == 0, 0.5, -0.1)

    assert bc_loss(cfg)(Off(cfg), batch).item() == pytest.approx((0.5 ** 2 + 0.1 ** 2) / 2)


def test_rollout_executes_receding_horizon_chunks():
    cfg = PushTPolicyConfig(widths=(8, 16, 32), time_dim=16, hidden=32, depth=2, ddim_steps=2)
    _, dp, _ = _policies(cfg)
    out = rollout(dp, seed=0, max_steps=20, record_chunks=True)
    assert out["steps"] == 20 and len(out["coverage"]) == 20 and out["block_poses"].shape == (21, 3)
    assert len(out["chunks"]) == 3 and [k for k, _ in out["chunks"]] == [0, 8, 16]   # a call every Ta = 8 steps
    assert len(out["chunk_seconds"]) == 3 and (out["chunk_seconds"] > 0).all()
    # the scores are those of the block poses the episode went through
    cov = [coverage(pose, GOAL_POSE) for pose in out["block_poses"][1:]]
    np.testing.assert_allclose(out["coverage"], cov, rtol=0, atol=1e-12)
    assert out["max_coverage"] == max(cov) and out["success"] == (max(cov) > 0.95)


# ----------------------------------------------------------------------------- what the rollouts execute
class ScriptedPolicy:
    """A policy whose chunk row ``k`` of call ``n`` is the target ``(100 + 10 k, 100 + 20 n)`` (or ``100 + 20 n + seed
    offset`` per batch row), recording the observation histories it is shown."""

    def __init__(self, cfg):
        self.cfg, self.histories = cfg, []

    def predict_chunk(self, obs_history):
        h = np.asarray(obs_history)
        single = h.ndim == 2
        h = h[None] if single else h
        assert h.shape[1:] == (self.cfg.n_obs_steps, OBS_DIM)
        n = len(self.histories)
        self.histories.append(h.copy())
        k = np.arange(self.cfg.horizon)
        rows = [np.stack([100.0 + 10 * k, np.full(self.cfg.horizon, 100.0 + 20 * n + b)], axis=1)
                for b in range(len(h))]
        chunk = np.stack(rows)
        return chunk[0] if single else chunk


class RecordingEnv(PushTEnv):
    """``PushTEnv`` that records every action it is given and every observation it returns."""

    log: list = []

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        self.actions, self.observations, self.poses = [], [obs], []
        RecordingEnv.log.append(self)
        return obs, info

    def step(self, action):
        self.actions.append(np.array(action, dtype=np.float64))
        out = super().step(action)
        self.observations.append(out[0])
        self.poses.append(self.block_pose)
        return out


@pytest.fixture
def recording_env(monkeypatch):
    import tutorial_lib.agents.pusht_rollout as module

    RecordingEnv.log = []
    monkeypatch.setattr(module, "PushTEnv", RecordingEnv)
    return RecordingEnv.log


@pytest.mark.parametrize("n_obs_steps, n_action_steps", [(2, 8), (3, 4)])
def test_rollout_executes_the_actions_from_the_current_observation_on(recording_env, n_obs_steps, n_action_steps):
    """Chunk row ``To - 1`` is the action for the current observation: rows ``To-1 .. To-2+Ta`` are executed."""
    cfg = PushTPolicyConfig(n_obs_steps=n_obs_steps, n_action_steps=n_action_steps, horizon=16)
    policy = ScriptedPolicy(cfg)
    rollout(policy, seed=3, max_steps=2 * n_action_steps + 1)
    env = recording_env[0]
    k = np.arange(n_obs_steps - 1, n_obs_steps - 1 + n_action_steps)
    for n in range(3):
        done = env.actions[n * n_action_steps:(n + 1) * n_action_steps]
        expected = np.stack([100.0 + 10 * k, np.full(len(k), 100.0 + 20 * n)], axis=1)[: len(done)]
        np.testing.assert_array_equal(np.array(done), expected)
    # the policy saw the last To observations, the first one repeated at the start
    obs = env.observations
    np.testing.assert_array_equal(policy.histories[0][0], np.stack([obs[0]] * n_obs_steps))
    t = n_action_steps
    np.testing.assert_array_equal(policy.histories[1][0], np.stack(obs[t - n_obs_steps + 1: t + 1]))


def test_evaluate_executes_the_same_actions_and_scores_coverage_and_reward(recording_env):
    cfg = PushTPolicyConfig(n_obs_steps=2, n_action_steps=8, horizon=16)
    policy = ScriptedPolicy(cfg)
    ev = evaluate(policy, seeds=[6, 16], max_steps=17, n_timing=1)   # starts with the block partly on the goal
    envs = recording_env
    assert len(envs) == 2 and ev["n_episodes"] == 2 and ev["steps"].tolist() == [17, 17]
    for b, env in enumerate(envs):
        k = np.arange(1, 9)
        for n in range(2):
            expected = np.stack([100.0 + 10 * k, np.full(8, 100.0 + 20 * n + b)], axis=1)
            np.testing.assert_array_equal(np.array(env.actions[8 * n: 8 * n + 8]), expected)
        np.testing.assert_array_equal(policy.histories[1][b], np.stack(env.observations[7:9]))
    # scores: the best coverage of each episode, and the paper's reward clip(coverage / 0.95, 0, 1)
    best = np.array([max(coverage(pose, GOAL_POSE) for pose in env.poses) for env in envs])
    assert (best > 0.2).all() and (best < 0.9).all()
    np.testing.assert_allclose(ev["max_coverage"], best, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ev["max_reward"], np.clip(best / 0.95, 0, 1), rtol=0, atol=1e-12)
    assert ev["mean_max_coverage"] == pytest.approx(best.mean())
    assert ev["mean_max_reward"] == pytest.approx(np.clip(best / 0.95, 0, 1).mean())
    assert ev["success"] == 0.0 and ev["chunk_ms"] > 0


class GoalStartEnv(RecordingEnv):
    """Every episode starts with the block on the goal (coverage 1: success at the first step) and the agent far."""

    def reset(self, seed=None, options=None):
        return super().reset(seed=seed, options={"state": [480.0, 30.0, *GOAL_POSE]})


class OutOfRangePolicy(ScriptedPolicy):
    """Targets outside the workspace: the rollouts clip them to [0, 512] before the env sees them."""

    def predict_chunk(self, obs_history):
        chunk = super().predict_chunk(obs_history)
        chunk[..., 0] = -50.0
        chunk[..., 1] = 600.0
        return chunk


def test_rollouts_clip_targets_record_success_and_time_the_calls(monkeypatch):
    import tutorial_lib.agents.pusht_rollout as module

    cfg = PushTPolicyConfig(n_obs_steps=2, n_action_steps=8, horizon=16)
    RecordingEnv.log = []
    monkeypatch.setattr(module, "PushTEnv", GoalStartEnv)
    out = rollout(OutOfRangePolicy(cfg), seed=0, max_steps=30, render=True, record_chunks=True)
    env = RecordingEnv.log[0]
    assert out["success"] is True and out["steps"] == 1 and out["max_coverage"] == pytest.approx(1.0)
    np.testing.assert_array_equal(env.actions[0], [0.0, 512.0])
    assert out["frames"].shape == (2, env.render_size, env.render_size, 3) and out["frames"].dtype == np.uint8
    assert 0 < out["chunk_seconds"][0] < 5.0 and len(out["chunks"]) == 1
    ev = evaluate(OutOfRangePolicy(cfg), seeds=[0, 1, 2], max_steps=30, n_timing=2)
    assert ev["success"] == 1.0 and ev["steps"].tolist() == [1, 1, 1] and not ev["block_left"].any()
    assert ev["max_reward"].tolist() == [1.0, 1.0, 1.0] and ev["mean_max_reward"] == 1.0
    np.testing.assert_array_equal(RecordingEnv.log[-1].actions[0], [0.0, 512.0])
    assert 0 < ev["chunk_ms"] < 5000.0
    assert ev["ci95"] == {"mean_max_coverage": pytest.approx(0.0, abs=1e-9), "mean_max_reward": 0.0,
                          "success": list(wilson_ci95(3, 3))}


def test_evaluate_scores_a_spread_of_episodes_with_their_intervals(recording_env):
    cfg = PushTPolicyConfig(n_obs_steps=3, n_action_steps=4, horizon=16)
    ev = evaluate(ScriptedPolicy(cfg), seeds=[6, 16, 24], max_steps=9, n_timing=1)
    for b, env in enumerate(recording_env):
        expected = np.stack([100.0 + 10 * np.arange(2, 6), np.full(4, 100.0 + b)], axis=1)
        np.testing.assert_array_equal(np.array(env.actions[:4]), expected)       # chunk[To-1 : To-1+Ta]
    assert ev["ci95"]["mean_max_coverage"] == pytest.approx(mean_ci95(ev["max_coverage"])[1])
    assert ev["ci95"]["mean_max_reward"] == pytest.approx(mean_ci95(ev["max_reward"])[1])
    assert ev["ci95"]["mean_max_reward"] > ev["ci95"]["mean_max_coverage"] > 0
    assert ev["ci95"]["success"] == list(wilson_ci95(0, 3))
    assert ev["steps"].dtype.kind == "i" and not ev["block_left"].any()


# ----------------------------------------------------------------------------- edges (from mutation testing)
def test_rollout_and_evaluate_default_lengths_and_timing(recording_env):
    """Episodes last 300 steps by default, and ``chunk_ms`` times the policy on the first 20 start states."""
    cfg = PushTPolicyConfig(n_obs_steps=2, n_action_steps=8, horizon=16)
    assert rollout(ScriptedPolicy(cfg), seed=0)["steps"] == 300         # the scripted targets never succeed
    assert evaluate(ScriptedPolicy(cfg), seeds=[0])["steps"].tolist() == [300]
    policy = ScriptedPolicy(cfg)
    evaluate(policy, seeds=range(21), max_steps=1)
    assert len(policy.histories) == 1 + 20                          # one decision point, then 20 timing calls
    assert [len(h) for h in policy.histories] == [21] + [1] * 20


@pytest.mark.parametrize("protocol", ["book", "reference"])
def test_rollouts_start_from_the_seeded_reset_of_their_protocol_without_rendering(recording_env, protocol):
    """The first observation is that of ``PushTEnv(reset_protocol=protocol).reset(seed=seed)``; no frames, no chunks
    and no renderer unless asked."""
    cfg = PushTPolicyConfig(n_obs_steps=2, n_action_steps=4, horizon=8)
    out = rollout(ScriptedPolicy(cfg), seed=5, max_steps=2, protocol=protocol)
    evaluate(ScriptedPolicy(cfg), seeds=[5, 9], max_steps=2, n_timing=1, protocol=protocol)
    assert "frames" not in out and "chunks" not in out
    for env, seed in zip(recording_env, [5, 5, 9]):
        assert env.render_mode is None and env.reset_protocol == protocol
        want = PushTEnv(obs_type="keypoints", reset_protocol=protocol).reset(seed=seed)[0]
        np.testing.assert_array_equal(env.observations[0], want)
    other = "reference" if protocol == "book" else "book"
    assert not np.array_equal(recording_env[0].observations[0],
                              PushTEnv(obs_type="keypoints", reset_protocol=other).reset(seed=5)[0])


def test_evaluate_calls_the_policy_again_every_ta_steps(recording_env):
    """With H != 2 Ta only rows To-1 .. To-2+Ta of each chunk are executed: a new call every Ta = 4 steps."""
    cfg = PushTPolicyConfig(n_obs_steps=3, n_action_steps=4, horizon=16)
    policy = ScriptedPolicy(cfg)
    evaluate(policy, seeds=[6, 16], max_steps=9, n_timing=1)
    assert len(policy.histories) == 3 + 1                        # decision points at steps 0, 4, 8; one timing call
    for b, env in enumerate(recording_env):
        k = np.arange(2, 6)
        for n in range(3):
            expected = np.stack([100.0 + 10 * k, np.full(4, 100.0 + 20 * n + b)], axis=1)[: 9 - 4 * n]
            np.testing.assert_array_equal(np.array(env.actions[4 * n: 4 * n + 4]), expected)


class TeleportEnv(PushTEnv):
    """After each step the block is reported at a scripted position (by reset seed): to test ``block_left``."""

    script: dict = {}

    def reset(self, seed=None, options=None):
        self._seed, self._forced = seed, None
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._forced = None
        out = super().step(action)
        self._forced = np.array([*TeleportEnv.script[self._seed][self._elapsed_steps - 1], 0.0])
        return out

    @property
    def block_pose(self):
        return super().block_pose if getattr(self, "_forced", None) is None else self._forced


def test_evaluate_flags_a_block_that_ever_left_the_workspace(monkeypatch):
    """``block_left``: the centre was once outside [0, 512]^2 (strictly; the edges are inside), even if it came back."""
    import tutorial_lib.agents.pusht_rollout as module

    TeleportEnv.script = {0: [(-1.0, 100.0), (100.0, 100.0), (100.0, 100.0)],      # out along x only, then back
                          1: [(0.0, 512.0), (0.5, 100.0), (512.0, 0.0)],          # on the edges: inside
                          2: [(100.0, 100.0), (100.0, 512.5), (100.0, 100.0)]}    # out along y only
    monkeypatch.setattr(module, "PushTEnv", TeleportEnv)
    ev = evaluate(ScriptedPolicy(PushTPolicyConfig(n_obs_steps=2, n_action_steps=8, horizon=16)), seeds=[0, 1, 2],
                  max_steps=3, n_timing=1)
    assert ev["steps"].tolist() == [3, 3, 3]
    assert ev["block_left"].tolist() == [True, False, True]


def test_evaluate_reports_the_median_policy_call_in_milliseconds(monkeypatch):
    import tutorial_lib.agents.pusht_rollout as module

    class Clock:                       # every timed call takes 0.25 s, 0.5 s or 2 s: median 0.5 s
        def __init__(self):
            self.t, self.durations, self.started = 0.0, iter([0.25, 2.0, 0.5]), False

        def perf_counter(self):
            if self.started:
                self.t += next(self.durations)
            self.started = not self.started
            return self.t

    monkeypatch.setattr(module, "time", Clock())
    ev = evaluate(ScriptedPolicy(PushTPolicyConfig(n_obs_steps=2, n_action_steps=8, horizon=16)), seeds=[0, 1, 2],
                  max_steps=1, n_timing=3)
    assert ev["chunk_ms"] == pytest.approx(500.0)


def test_load_policy_defaults_to_the_shipped_diffusion_policy_and_reads_a_given_file_with_its_seed(tmp_path):
    """``load_policy()`` is the shipped diffusion policy sampling with seed 0; ``seed`` reaches its sampler
    (the same observation, another seed: other chunks), and ``path`` loads that file, not the shipped one."""
    from tutorial_lib.agents.pusht_policy import load_policy
    from tutorial_lib.core.assets import verify_file
    from tutorial_lib.core.recipes import get_recipe

    shipped = load_policy(ddim_steps=2)                     # 2 DDIM steps: a fast test of the same code
    assert isinstance(shipped, DiffusionPolicy)
    assert isinstance(shipped.denoiser, torch.jit.ScriptModule), "the network runs as a TorchScript trace by default"
    obs, _ = PushTEnv(obs_type="keypoints").reset(seed=0)
    history = np.repeat(obs[None], shipped.cfg.n_obs_steps, axis=0)
    chunk = shipped.predict_chunk(history)
    np.testing.assert_array_equal(load_policy(ddim_steps=2, seed=0).predict_chunk(history), chunk)
    other = load_policy(ddim_steps=2, seed=1).predict_chunk(history)
    assert np.abs(other - chunk).max() > 1.0, "the seed did not reach the sampler"

    ckpt = torch.load(verify_file(get_recipe("pusht-diffusion-policy").default_path()), weights_only=True)
    for key in ("model_state", "ema_state"):
        ckpt[key] = {k: v * 0.5 if v.is_floating_point() else v for k, v in ckpt[key].items()}
    torch.save(ckpt, tmp_path / "halved.pt")
    halved = load_policy(ddim_steps=2, path=tmp_path / "halved.pt")
    for mine, theirs in zip(halved.net.state_dict().values(), shipped.net.state_dict().values()):
        if theirs.is_floating_point():
            torch.testing.assert_close(mine, 0.5 * theirs, rtol=0, atol=0)
