"""Conditioning: the guidance function, classifier-free guidance, via-point inpainting, and their maze planners."""

import numpy as np
import pytest
import torch

from tutorial_lib.diffusion.ddpm import GaussianDiffusion, linear_beta_schedule
from tutorial_lib.agents.diffuser_planner import DiffuserPlanner
from tutorial_lib.agents.diffuser import make_diffusion
from tutorial_lib.envs.maze_data import generate_dataset
from tutorial_lib.diffusion.guidance import (cfg_denoiser, drop_condition, guided_sample_loop, value_gradient, value_loss,
                                   with_keep_flag)
from tutorial_lib.experiments.maze_conditioning import (BONUS, CFGPlanner, GuidedPlanner, MazeCFGConfig, bonus_return,
                                            build_cfg_net, cfg_loss, maze_value_loss, value_batches, MazeValueConfig)
from tutorial_lib.nets import ConditionalTimeMLP, TemporalUnet, TemporalValue, TimeMLP
from tutorial_lib.agents.trajectories import TrajectoryWindows


def standard_normal_denoiser(diffusion):
    """The exact noise predictor of N(0, I) data: E[eps | x_t] = sqrt(1 - bar-alpha_t) x_t."""
    b = diffusion.sqrt_one_minus_alphas_cumprod
    return lambda x, t: b[t].reshape(-1, *([1] * (x.ndim - 1))) * x


@pytest.fixture(scope="module")
def gaussian():
    return GaussianDiffusion(linear_beta_schedule(100))


# ----------------------------------------------------------------------------- guidance function
def test_value_gradient_of_a_linear_value():
    w = torch.tensor([1.5, -2.0])
    values, grad = value_gradient(lambda x, t: x @ w, torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    assert values.shape == (5,)
    torch.testing.assert_close(grad, w.expand(5, 2))


@pytest.mark.parametrize("scale", [1.0, -1.0])
def test_guidance_moves_samples_along_the_value_gradient(gaussian, scale):
    model = standard_normal_denoiser(gaussian)
    value = lambda x, t: x[:, 0]  # noqa: E731  reward: the first coordinate
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = gaussian.p_sample_loop(model, (4000, 2), g())
    guided = guided_sample_loop(model, gaussian, value, (4000, 2), scale=scale, generator=g())
    shift = (guided[:, 0] - plain[:, 0]).mean().item()
    assert np.sign(shift) == np.sign(scale) and abs(shift) > 0.05
    assert abs((guided[:, 1] - plain[:, 1]).mean().item()) < 1e-6    # nothing rewards the second coordinate


def test_zero_scale_or_late_stop_is_the_plain_sampler(gaussian):
    model = standard_normal_denoiser(gaussian)
    value = lambda x, t: x.sum(-1)  # noqa: E731
    plain = gaussian.p_sample_loop(model, (50, 2), torch.Generator().manual_seed(1))
    for kw in (dict(scale=0.0), dict(scale=5.0, t_stopgrad=gaussian.n_diffusion_steps)):
        out = guided_sample_loop(model, gaussian, value, (50, 2), generator=torch.Generator().manual_seed(1), **kw)
        torch.testing.assert_close(out, plain)
    with pytest.raises(ValueError, match="n_guide_steps"):
        guided_sample_loop(model, gaussian, value, (5, 2), scale=1.0, n_guide_steps=-1)


def test_more_guide_steps_move_further(gaussian):
    model = standard_normal_denoiser(gaussian)
    value = lambda x, t: x[:, 0]  # noqa: E731
    means = [guided_sample_loop(model, gaussian, value, (2000, 2), scale=1.0, n_guide_steps=n,
                                generator=torch.Generator().manual_seed(2))[:, 0].mean().item() for n in (1, 3)]
    assert means[1] > means[0] > 0


def test_guided_sampling_keeps_inpainted_entries_exact(gaussian):
    model = standard_normal_denoiser(gaussian)
    pin = lambda x: torch.cat([torch.full_like(x[:, :1], 0.7), x[:, 1:]], dim=1)  # noqa: E731
    traj = guided_sample_loop(model, gaussian, lambda x, t: -(x ** 2).sum(-1), (20, 3), scale=2.0,
                              condition=pin, return_trajectory=True)
    assert traj.shape == (101, 20, 3)
    assert (traj[:, :, 0] == 0.7).all()


def test_value_loss_checks_shapes_and_learns_the_return():
    diffusion = GaussianDiffusion(linear_beta_schedule(50))
    torch.manual_seed(0)
    net = TimeMLP(dim=2, hidden=32, depth=2, out_dim=1)
    value = lambda x, t: net(x, t).squeeze(-1)  # noqa: E731
    with pytest.raises(ValueError, match="returns must have shape"):
        value_loss(value, diffusion, torch.randn(8, 2), torch.randn(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        x0 = torch.randn(256, 2, generator=g)
        loss = value_loss(value, diffusion, x0, x0[:, 0], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # at the lowest noise the value is nearly the return itself, so its gradient points along +x
    _, grad = value_gradient(value, torch.randn(64, 2), torch.zeros(64, dtype=torch.long))
    assert (grad[:, 0] > 0.5).float().mean() > 0.9


def test_value_loss_shows_the_value_the_conditioned_noisy_sample_and_regresses_the_return(gaussian):
    """The value sees ``condition(q_sample(x0, t))`` at the drawn steps, and the loss is its squared error."""
    seen = {}

    def value(x, t):
        seen["x"], seen["t"] = x.clone(), t.clone()
        return x[:, 1] * 0 + 3.0

    pin = lambda x: torch.cat([torch.full_like(x[:, :1], 0.25), x[:, 1:]], dim=1)  # noqa: E731
    x0, returns = torch.randn(500, 2), torch.randn(500)
    loss = value_loss(value, gaussian, x0, returns, torch.Generator().manual_seed(4), condition=pin)
    assert (seen["x"][:, 0] == 0.25).all()                                   # the condition reached the value
    g = torch.Generator().manual_seed(4)                                     # the same draws, by hand
    t = torch.randint(0, gaussian.n_diffusion_steps, (500,), generator=g)
    x_t = gaussian.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    torch.testing.assert_close(seen["t"], t)
    torch.testing.assert_close(seen["x"][:, 1], x_t[:, 1])
    assert loss.item() == pytest.approx(((3.0 - returns) ** 2).mean().item(), rel=1e-6)
    plain = {}
    value_loss(lambda x, t: plain.setdefault("x", x) [:, 0], gaussian, x0, returns, torch.Generator().manual_seed(4))
    torch.testing.assert_close(plain["x"], x_t)                              # no condition: x_t itself


@pytest.mark.parametrize("t_stopgrad, n_guide_steps", [(0, 1), (1, 2), (37, 1)])
def test_guidance_is_applied_at_every_step_from_the_top_down_to_t_stopgrad(gaussian, t_stopgrad, n_guide_steps):
    """The value is asked for its gradient ``n_guide_steps`` times at each step t >= t_stopgrad, never below."""
    steps = []

    def value(x, t):
        steps.append(int(t[0]))
        return x[:, 0]

    guided_sample_loop(standard_normal_denoiser(gaussian), gaussian, value, (3, 2), scale=1.0,
                       n_guide_steps=n_guide_steps, t_stopgrad=t_stopgrad, generator=torch.Generator().manual_seed(0))
    expected = [t for t in reversed(range(t_stopgrad, gaussian.n_diffusion_steps)) for _ in range(n_guide_steps)]
    assert steps == expected


def test_one_guided_step_by_hand(gaussian):
    """x <- x + scale * Sigma_t * grad J (or scale * grad J), then the ancestral step from there."""
    model = standard_normal_denoiser(gaussian)
    x_T, w, T = torch.tensor([[0.5, -1.0]]), torch.tensor([2.0, -1.0]), gaussian.n_diffusion_steps
    tt = torch.full((1,), T - 1)
    for by_std in (True, False):
        traj = guided_sample_loop(model, gaussian, lambda x, t: x @ w, (1, 2), scale=0.3, x_T=x_T,
                                  scale_grad_by_std=by_std, return_trajectory=True,
                                  generator=torch.Generator().manual_seed(0))
        shifted = x_T + 0.3 * (gaussian.posterior_variance[T - 1] if by_std else 1.0) * w
        mean, var, _ = gaussian.p_mean_variance(model, shifted, tt)
        z = torch.randn((1, 2), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(traj[1], mean + var.sqrt() * z, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- classifier-free guidance
def test_keep_flag_and_condition_dropout():
    c = torch.randn(4000, 3)
    null = with_keep_flag(c, torch.zeros(4000))
    assert (null == 0).all()
    dropped = drop_condition(c, 0.25, torch.Generator().manual_seed(0))
    assert dropped.shape == (4000, 4)
    kept = dropped[:, -1] == 1
    assert abs((~kept).float().mean().item() - 0.25) < 0.03
    torch.testing.assert_close(dropped[kept, :3], c[kept])
    assert (dropped[~kept] == 0).all()
    with pytest.raises(ValueError, match="p_uncond"):
        drop_condition(c, 1.5)


def test_cfg_weight_interpolates_and_extrapolates():
    torch.manual_seed(0)
    net = ConditionalTimeMLP(dim=2, cond_dim=4, hidden=16, depth=1)
    x, t, c = torch.randn(6, 2), torch.randint(0, 10, (6,)), torch.randn(6, 3)
    cond = net(x, t, with_keep_flag(c, torch.ones(6)))
    uncond = net(x, t, with_keep_flag(c, torch.zeros(6)))
    torch.testing.assert_close(cfg_denoiser(net, c, 0.0)(x, t), uncond)
    torch.testing.assert_close(cfg_denoiser(net, c, 1.0)(x, t), cond)
    torch.testing.assert_close(cfg_denoiser(net, c, 3.0)(x, t), uncond + 3 * (cond - uncond))


# ----------------------------------------------------------------------------- the maze: value, CFG, via-points
@pytest.fixture(scope="module")
def umaze_windows():
    return TrajectoryWindows.from_maze_data(generate_dataset("umaze", 6_000, seed=3), horizon=16, stride=2)


def test_temporal_value_shapes_for_several_horizons():
    net = TemporalValue(6, dim=8, dim_mults=(1, 2, 4))
    for h in (8, 16, 36):
        assert net(torch.randn(3, h, 6), torch.randint(0, 10, (3,))).shape == (3,)
    with pytest.raises(ValueError, match=r"x must have shape \(B, H, 6\)"):
        net(torch.randn(3, 16, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="t must have shape"):
        net(torch.randn(3, 16, 6), torch.zeros(2, dtype=torch.long))


def test_bonus_return_counts_points_in_the_disc():
    cx, cy = BONUS["center"]
    pts = np.array([[[cx, cy], [cx + 0.1, cy], [cx + 2, cy], [0.0, 0.0]]])
    assert bonus_return(pts)[0] == 0.5
    torch.testing.assert_close(bonus_return(torch.as_tensor(pts)), torch.tensor([0.5], dtype=torch.float64))


def test_value_batches_and_loss_run(umaze_windows):
    cfg = MazeValueConfig(layout="umaze", horizon=16, stride=2, n_diffusion_steps=8, dim=8)
    sample = value_batches(cfg, umaze_windows, "cpu")
    x0, returns = sample(5, torch.Generator().manual_seed(0))
    assert x0.shape == (5, 16, 6) and returns.shape == (5,) and ((returns >= 0) & (returns <= 1)).all()
    loss = maze_value_loss(cfg, "cpu")(TemporalValue(6, dim=8), (x0, returns), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_cfg_loss_ignores_the_start_and_runs(umaze_windows):
    cfg = MazeCFGConfig(horizon=16, widths=(8, 16), time_dim=8)
    model, diffusion = build_cfg_net(cfg), make_diffusion(8)
    x0 = umaze_windows.sample_batch(4, torch.Generator().manual_seed(0))
    assert torch.isfinite(cfg_loss(model, diffusion, x0, 0.2, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="p_uncond"):
        MazeCFGConfig(p_uncond=0.0)


def test_via_points_are_inpainted_exactly(umaze_windows):
    torch.manual_seed(0)
    unet = TemporalUnet(6, dim=8, dim_mults=(1, 2, 4), mask_dim=4).eval()
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    for arrival in ("end", "earliest"):
        planner = DiffuserPlanner(unet, make_diffusion(8), umaze_windows.normalizer, horizon=16, ddim_steps=4,
                                  arrival=arrival, n_arrivals=8, device="cpu", via={6: (3.0, 3.0)})
        plan = planner.plan(state, goal)
        np.testing.assert_allclose(plan.observations[:, 6, :2], np.broadcast_to([3.0, 3.0], (len(plan.arrival), 2)),
                                   atol=1e-5)
        assert (plan.arrival > 6).all()        # no arrival before the via-point
    with pytest.raises(ValueError, match="via-point"):
        planner.plan(state, goal, via={15: (3.0, 3.0)})


def test_guided_and_cfg_planners_plan_and_track(umaze_windows):
    torch.manual_seed(0)
    unet = TemporalUnet(6, dim=8, dim_mults=(1, 2, 4)).eval()
    value = TemporalValue(6, dim=8).eval()
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    guided = GuidedPlanner(unet, make_diffusion(8), umaze_windows.normalizer, 16, value, scale=0.1, n_samples=2,
                           device="cpu")
    plan = guided.plan(state, goal)
    assert plan.observations.shape == (2, 16, 4)
    np.testing.assert_allclose(plan.observations[:, -1], np.broadcast_to([1.0, 1.0, 0.0, 0.0], (2, 4)), atol=1e-5)
    assert guided(state, goal).shape == (2,)
    with pytest.raises(ValueError, match="DDPM"):
        GuidedPlanner(unet, make_diffusion(8), umaze_windows.normalizer, 16, value, ddim_steps=4)
    cfg_net = build_cfg_net(MazeCFGConfig(horizon=16, widths=(8, 16), time_dim=8)).eval()
    planner = CFGPlanner(cfg_net, make_diffusion(8), umaze_windows.normalizer, 16, weight=2.0, n_samples=3,
                         ddim_steps=4, device="cpu")
    plan = planner.plan(state, goal)
    assert plan.observations.shape == (3, 16, 4) and (plan.arrival == 15).all()
    np.testing.assert_allclose(plan.observations[:, 0], np.broadcast_to(state, (3, 4)), atol=1e-5)
    with pytest.raises(ValueError, match="via-points"):
        planner.plan(state, goal, via={4: (3.0, 3.0)})


def test_condition_dropout_bounds_seed_and_device():
    """p_uncond = 0 keeps every condition and 1 drops every one (both ends allowed); the generator alone drives the
    draws (the global RNG is not used); the draws and the flag live on the condition's device ("meta" for a GPU)."""
    c = torch.randn(500, 2)
    assert (drop_condition(c, 0.0, torch.Generator().manual_seed(0))[:, -1] == 1).all()
    assert (drop_condition(c, 1.0, torch.Generator().manual_seed(0))[:, -1] == 0).all()
    draws = []
    for seed in (1, 2):
        torch.manual_seed(seed)                                   # a different global RNG state each time
        draws.append(drop_condition(c, 0.5, torch.Generator().manual_seed(7)))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    assert drop_condition(c.to("meta"), 0.5).device.type == "meta"
    with pytest.raises(ValueError, match=r"p_uncond must be a probability in \[0, 1\], got -0.1"):
        drop_condition(c, -0.1)


def test_keep_flag_checks_shapes_and_keeps_the_condition_dtype():
    c = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"cond must be \(B, K\) and keep \(B,\), got \(4, 3\) and \(5, 1\)"):
        with_keep_flag(c, torch.ones(5))                          # B differs, cond is 2-D
    with pytest.raises(ValueError, match=r"got \(4,\) and \(4, 1\)"):
        with_keep_flag(c[:, 0], torch.ones(4))                    # cond is 1-D, B agrees
    half = with_keep_flag(c.half(), torch.ones(4))                # a float32 flag is cast to the condition's dtype
    assert half.dtype == torch.float16 and half.shape == (4, 4)


def test_value_loss_error_names_the_batch_size(gaussian):
    with pytest.raises(ValueError, match=r"returns must have shape \(8,\), one per sample, got \(8, 1\)"):
        value_loss(lambda x, t: x[:, 0], gaussian, torch.randn(8, 2), torch.randn(8, 1))


def test_cfg_denoiser_builds_its_flags_on_the_condition_device():
    """Both halves of the batched call carry their keep flag on the condition's device ("meta" stands in for a GPU)."""
    seen = []

    def model(x, t, c_in):
        seen.append(c_in.device.type)
        return x
    x, t = torch.zeros(2, 2, device="meta"), torch.zeros(2, dtype=torch.long, device="meta")
    for w in (1.0, 2.0):
        cfg_denoiser(model, torch.zeros(2, 3, device="meta"), w)(x, t)
    assert seen == ["meta", "meta"]


def test_guidance_experiment_passes_its_pairs_and_stop_step_to_the_planner(monkeypatch):
    """The exercises' hazard (given pairs, a negative scale) and stop-gradient runs reach the planner."""
    import numpy as np

    from tutorial_lib.experiments import maze_conditioning as mc

    made, rolled = [], []

    class Recording:
        def __init__(self, *args, scale, t_stopgrad, **kwargs):
            made.append((scale, t_stopgrad))

    def episodes(layout, planner, pairs, seed=0):
        rolled.append(np.asarray(pairs))
        return [{"states": np.array([[1.5, 5.5, 0, 0], [3.0, 3.0, 0, 0]]), "steps_to_goal": 3}] * len(pairs)

    monkeypatch.setattr(mc, "GuidedPlanner", Recording)
    monkeypatch.setattr(mc, "_episodes", episodes)
    monkeypatch.setattr(mc, "load_value", lambda device=None: (None, None))
    pairs = np.array([[[1.0, 6.0], [3.0, 3.0]]])
    out = mc.guidance_experiment(scales=(0.0, -3000.0), pairs=pairs, t_stopgrad=8)
    assert made == [(0.0, 8), (-3000.0, 8)]
    np.testing.assert_array_equal(rolled[0], pairs)
    assert out["n_pairs"] == 1
    assert out["scales"]["-3000.0"] == {"bonus_steps": 1.0, "bonus_visited": 1.0, "success": 1.0}
