"""The forward process, the schedules, and the DDPM / DDIM samplers."""

import math

import pytest
import torch

from tutorial_lib.diffusion.ddpm import GaussianDiffusion, cosine_beta_schedule, linear_beta_schedule, make_beta_schedule
from tutorial_lib.diffusion.metrics import energy_distance


@pytest.mark.parametrize("name,T", [("linear", 50), ("linear", 1000), ("cosine", 10), ("cosine", 100), ("cosine", 1000)])
def test_schedules_are_monotone_and_valid(name, T):
    betas = make_beta_schedule(name, T)
    d = GaussianDiffusion(betas)
    assert betas.shape == (T,)
    assert ((betas > 0) & (betas < 1)).all()
    ac = d.alphas_cumprod
    assert (ac[1:] < ac[:-1]).all(), "bar-alpha_t must strictly decrease"
    assert ac[0] > 0.97 and ac[-1] < 0.01, "the process must start near the data and end near pure noise"


def test_linear_schedule_matches_ho_et_al_at_T_1000():
    betas = linear_beta_schedule(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_cosine_schedule_follows_its_formula():
    T, s = 100, 0.008
    d = GaussianDiffusion(cosine_beta_schedule(T, s=s))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    for t in [0, 10, 50, 90]:
        assert d.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4)


def test_unknown_schedule_and_too_short_linear_chain_are_named():
    with pytest.raises(ValueError, match="unknown beta schedule 'quadratic'"):
        make_beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="linear schedule needs n_diffusion_steps > 20"):
        make_beta_schedule("linear", 10)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_marginal_mean_and_variance(t):
    d = GaussianDiffusion(linear_beta_schedule(1000))
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 1.5)
    xt = d.q_sample(x0, torch.full((200_000,), t), generator=g)
    abar = d.alphas_cumprod[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 1.5, abs=0.01)
    assert xt.var().item() == pytest.approx(1 - abar, abs=0.01 * max(1 - abar, 0.01) + 1e-4)


def test_posterior_matches_bayes_rule_numerically():
    # q(x_{t-1} | x_t, x_0) for scalars: check mean and variance by conditioning a joint Gaussian.
    d = GaussianDiffusion(cosine_beta_schedule(50))
    t, x0, xt = 20, 0.7, -0.3
    a_prev, alpha = d.alphas_cumprod_prev[t].item(), d.alphas[t].item()
    # x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev) e1 ;  x_t = sqrt(alpha) x_{t-1} + sqrt(1 - alpha) e2
    var_prev, cov = 1 - a_prev, math.sqrt(alpha) * (1 - a_prev)
    var_t = alpha * var_prev + (1 - alpha)
    mean = math.sqrt(a_prev) * x0 + cov / var_t * (xt - math.sqrt(alpha * a_prev) * x0)
    var = var_prev - cov ** 2 / var_t
    got = d.posterior_mean_coef1[t].item() * x0 + d.posterior_mean_coef2[t].item() * xt
    assert got == pytest.approx(mean, rel=1e-4)
    assert d.posterior_variance[t].item() == pytest.approx(var, rel=1e-4)


class GaussianEps(torch.nn.Module):
    """The exact noise predictor for data ~ N(m, s^2): eps*(x_t, t) = E[eps | x_t]."""

    def __init__(self, diffusion, m=1.0, s=0.5):
        super().__init__()
        self.d, self.m, self.s = diffusion, m, s

    def forward(self, x, t):
        a = self.d.alphas_cumprod[t][:, None]
        var_t = a * self.s ** 2 + (1 - a)
        return (1 - a).sqrt() * (x - a.sqrt() * self.m) / var_t


def test_ddpm_with_exact_denoiser_recovers_the_gaussian():
    d = GaussianDiffusion(linear_beta_schedule(200))
    g = torch.Generator().manual_seed(1)
    x = d.p_sample_loop(GaussianEps(d), (20_000, 1), generator=g)
    assert x.mean().item() == pytest.approx(1.0, abs=0.02)
    assert x.std().item() == pytest.approx(0.5, abs=0.02)


def test_ddim_deterministic_with_exact_denoiser_converges_to_the_gaussian():
    """Deterministic DDIM integrates the probability-flow ODE: exact in the limit of many steps,
    and with few steps it shrinks the spread (the first jumps from pure noise land near the mean)."""
    d = GaussianDiffusion(cosine_beta_schedule(200))
    std_error = {}
    for n_steps in [5, 20, 200]:
        x = d.ddim_sample_loop(GaussianEps(d), (20_000, 1), n_steps=n_steps, eta=0.0,
                               generator=torch.Generator().manual_seed(2))
        assert x.mean().item() == pytest.approx(1.0, abs=0.03)
        std_error[n_steps] = abs(x.std().item() - 0.5)
    assert std_error[200] < 0.02
    assert std_error[200] < std_error[20] < std_error[5]


def test_ddim_eta1_all_steps_equals_ddpm():
    """DDIM with eta = 1 and every step is DDPM: same noise in, same samples out."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    model = lambda x, t: 0.3 * net(torch.cat([x, t[:, None].float() / 50], dim=1))
    d = GaussianDiffusion(linear_beta_schedule(50))
    x_ddpm = d.p_sample_loop(model, (500, 2), generator=torch.Generator().manual_seed(3))
    x_ddim = d.ddim_sample_loop(model, (500, 2), n_steps=50, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x_ddim, x_ddpm, atol=1e-4, rtol=1e-4)


def test_ddim_eta1_all_steps_agrees_in_distribution_with_ddpm():
    d = GaussianDiffusion(linear_beta_schedule(100))
    model = GaussianEps(d)
    x_ddpm = d.p_sample_loop(model, (3000, 1), generator=torch.Generator().manual_seed(5))
    x_ddim = d.ddim_sample_loop(model, (3000, 1), n_steps=100, eta=1.0, generator=torch.Generator().manual_seed(6))
    wrong = 1.0 + 0.6 * torch.randn(3000, 1, generator=torch.Generator().manual_seed(7))
    assert energy_distance(x_ddim, x_ddpm) < 0.005 < energy_distance(wrong, x_ddpm)


def test_ddim_timesteps_spacings():
    d = GaussianDiffusion(linear_beta_schedule(1000))
    assert d.ddim_timesteps(10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert d.ddim_timesteps(10, "quadratic") == [999, 809, 639, 489, 359, 249, 159, 89, 39, 9]
    for spacing in ["uniform", "quadratic"]:
        assert d.ddim_timesteps(1000, spacing) == list(range(999, -1, -1))
        for n in [1, 2, 3, 7, 50, 333, 999]:
            steps = d.ddim_timesteps(n, spacing)
            assert len(steps) == n and steps[0] == 999 and all(a > b >= 0 for a, b in zip(steps, steps[1:]))
    with pytest.raises(ValueError, match="n_steps must be in"):
        d.ddim_timesteps(0)
    with pytest.raises(ValueError, match="unknown spacing 'cubic'"):
        d.ddim_timesteps(5, "cubic")


def test_x0_prediction_roundtrip():
    d = GaussianDiffusion(cosine_beta_schedule(100), prediction="x0")
    x0 = torch.randn(8, 3)
    t = torch.arange(8) * 12
    noise = torch.randn(8, 3)
    xt = d.q_sample(x0, t, noise)
    eps, x0_hat = d.predict_eps_x0(lambda x, tt: x0, xt, t)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps, noise, atol=1e-3, rtol=1e-3)


def test_training_loss_is_zero_for_the_true_noise():
    d = GaussianDiffusion(linear_beta_schedule(100))
    x0 = torch.randn(64, 2)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    t = d.sample_timesteps(64, g2)
    noise = torch.randn(x0.shape, generator=g2)
    oracle = lambda xt, tt: noise
    assert d.training_loss(oracle, x0, g1).item() == pytest.approx(0.0, abs=1e-10)
    assert d.training_loss(lambda xt, tt: torch.zeros_like(xt), x0, g1).item() > 0.5


def test_respacing_keeps_the_marginals_and_maps_the_steps():
    from tutorial_lib.diffusion.ddpm import linear_beta_schedule, respace, respaced_model

    full = GaussianDiffusion(linear_beta_schedule(1000))
    short, steps = respace(full, 100)
    assert short.n_diffusion_steps == 100 and steps[-1] == 999 and (steps.diff() > 0).all()
    torch.testing.assert_close(short.alphas_cumprod, full.alphas_cumprod[steps])
    same, _ = respace(full, 1000)
    torch.testing.assert_close(same.betas, full.betas, atol=1e-6, rtol=1e-4)
    seen = []
    respaced_model(lambda x, t: seen.append(t) or x, steps)(torch.zeros(2, 2), torch.tensor([0, 99]))
    assert seen[0].tolist() == [9, 999]


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_clamped_x0_comes_with_the_noise_that_explains_x_t(prediction):
    """With ``clip_denoised`` the clean estimate is clamped and eps recomputed from it: x_t = a x0 + b eps still holds."""
    d = GaussianDiffusion(cosine_beta_schedule(100), prediction=prediction, clip_denoised=1.0)
    x_t = torch.linspace(-3, 3, 24).reshape(8, 3)
    t = torch.arange(8) * 12
    out = 2.0 * torch.ones(8, 3) if prediction == "x0" else -torch.ones(8, 3)   # clean estimates outside [-1, 1]
    eps, x0 = d.predict_eps_x0(lambda x, tt: out, x_t, t)
    assert x0.abs().max() <= 1.0 and (x0.abs() == 1.0).any()
    a, b = d.sqrt_alphas_cumprod[t][:, None], d.sqrt_one_minus_alphas_cumprod[t][:, None]
    torch.testing.assert_close(a * x0 + b * eps, x_t, rtol=0, atol=1e-5)


def test_one_ddim_step_with_clamping_by_hand():
    """x_s = sqrt(abar_s) clamp(x0) + sqrt(1 - abar_s) eps(clamp(x0)) for eta = 0 (the Push-T policy's sampler)."""
    d = GaussianDiffusion(cosine_beta_schedule(100), prediction="epsilon", clip_denoised=1.0)
    x_T = torch.tensor([[2.0, -0.5, 0.1]])
    eps_net = torch.tensor([[-1.0, 0.3, 0.0]])                  # x0 = (x_T - b eps) / a: the first entry is > 1
    traj = d.ddim_sample_loop(lambda x, t: eps_net, x_T.shape, n_steps=2, x_T=x_T, return_trajectory=True)
    t, s = d.ddim_timesteps(2)
    assert (t, s) == (99, 49)
    a_t, a_s = d.alphas_cumprod[t], d.alphas_cumprod[s]
    x0 = ((x_T - (1 - a_t).sqrt() * eps_net) / a_t.sqrt()).clamp(-1, 1)
    eps = (x_T - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    torch.testing.assert_close(traj[1], a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps, rtol=0, atol=1e-5)


# ----- pinned behaviour (mutation testing, tests/MUTANTS.md) ---------------------------------------------------


def test_linear_schedule_boundary_dtype_and_message():
    """T = 20 puts beta_end exactly at 1: refused like any shorter chain; the message names the bound; float64."""
    for T in (15, 20):
        with pytest.raises(ValueError, match=rf"^the linear schedule needs n_diffusion_steps > 20 \(beta_end is "
                                             rf"rescaled by 1000 / T\), got {T}; use 'cosine' for short chains$"):
            linear_beta_schedule(T)
    assert linear_beta_schedule(21).dtype == torch.float64 and linear_beta_schedule(21)[-1] < 1


def test_cosine_schedule_defaults_and_single_step():
    T = 100
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = cosine_beta_schedule(T)
    assert betas.dtype == torch.float64
    assert betas[10].item() == pytest.approx(1 - f(11) / f(10), rel=1e-9)
    assert betas[-1].item() == pytest.approx(0.999) and cosine_beta_schedule(T, max_beta=0.5).max().item() == 0.5
    one = make_beta_schedule("cosine", 1)                  # the shortest chain: one step, clipped at max_beta
    assert one.tolist() == pytest.approx([0.999])
    with pytest.raises(ValueError, match=r"^n_diffusion_steps must be >= 1, got 0$"):
        make_beta_schedule("cosine", 0)
    with pytest.raises(ValueError, match=r"^unknown beta schedule 'x'; choose one of \['cosine', 'linear'\]$"):
        make_beta_schedule("x", 5)


def test_invalid_betas_and_prediction_are_refused():
    for bad in ([0.1, 0.0], [0.1, 1.0], [0.1, -0.2], [[0.1, 0.2]], [0.1, 1.5]):
        with pytest.raises(ValueError, match=r"^betas must be a 1-D tensor with every value in \(0, 1\)$"):
            GaussianDiffusion(torch.tensor(bad))
    with pytest.raises(ValueError, match=r"^prediction must be 'epsilon' or 'x0', got 'v'$"):
        GaussianDiffusion(torch.tensor([0.1]), prediction="v")
    d = GaussianDiffusion(torch.tensor([0.1, 0.999]), prediction="x0", clip_denoised=2.0)
    assert (d.prediction, d.clip_denoised, d.n_diffusion_steps, d.device) == ("x0", 2.0, 2, torch.device("cpu"))


def test_schedule_tensors_are_computed_in_float64():
    """A float32 (or list) schedule is promoted first: 1 - (1 - 1e-8) is 1e-8 in float64 but 0 in float32."""
    d = GaussianDiffusion([1e-8, 0.5])
    assert d.sqrt_one_minus_alphas_cumprod[0].item() == pytest.approx(1e-4, rel=1e-4)
    for k in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
              "sqrt_one_minus_alphas_cumprod", "posterior_variance", "posterior_mean_coef1", "posterior_mean_coef2"):
        assert getattr(d, k).dtype == torch.float32 and getattr(d, k).shape == (2,), k
    torch.testing.assert_close(d.alphas_cumprod_prev, torch.tensor([1.0, 1 - 1e-8]))
    b = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    d = GaussianDiffusion(b)
    ac = torch.cumprod(1 - b, 0)
    torch.testing.assert_close(d.alphas_cumprod, ac.float())
    torch.testing.assert_close(d.posterior_variance, (b * (1 - torch.cat([torch.ones(1, dtype=b.dtype), ac[:-1]]))
                                                      / (1 - ac)).float())
    assert d.posterior_variance[0].item() == 0.0


def test_to_moves_every_tensor_and_returns_self():
    d = GaussianDiffusion(cosine_beta_schedule(10))
    before = {k: v.clone() for k, v in vars(d).items() if isinstance(v, torch.Tensor)}
    assert d.to("cpu") is d and d.device == torch.device("cpu")
    assert len(before) == 9
    for k, v in before.items():
        torch.testing.assert_close(getattr(d, k), v)
        assert getattr(d, k).device == torch.device("cpu")
    d.device = "meta-not-a-device"                  # to() replaces the attribute with a torch.device
    d.to(torch.device("cpu"))
    assert d.device == torch.device("cpu")


def test_q_sample_and_timesteps_are_reproducible_from_the_generator():
    d = GaussianDiffusion(cosine_beta_schedule(5))
    x0 = torch.linspace(-1, 1, 6).reshape(3, 2)
    t = torch.tensor([0, 2, 4])
    xt = d.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(xt, d.sqrt_alphas_cumprod[t][:, None] * x0
                               + d.sqrt_one_minus_alphas_cumprod[t][:, None] * noise)
    ts = d.sample_timesteps(4000, torch.Generator().manual_seed(0))
    assert ts.dtype == torch.long and ts.shape == (4000,) and set(ts.tolist()) == {0, 1, 2, 3, 4}
    torch.testing.assert_close(ts, torch.randint(0, 5, (4000,), generator=torch.Generator().manual_seed(0)))


def test_training_loss_by_hand_with_condition_and_x0_target():
    for prediction in ("epsilon", "x0"):
        d = GaussianDiffusion(cosine_beta_schedule(8), prediction=prediction)
        x0 = torch.linspace(-1, 1, 10).reshape(5, 2)
        g = torch.Generator().manual_seed(4)
        t = torch.randint(0, 8, (5,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x_t = d.q_sample(x0, t, noise)
        cond = lambda x: x * 0 + 0.25                       # the network should see condition(x_t)
        seen = []
        model = lambda x, tt: seen.append((x.clone(), tt.clone())) or torch.full_like(x, 0.5)
        loss = d.training_loss(model, x0, torch.Generator().manual_seed(4), condition=cond)
        torch.testing.assert_close(seen[0][0], cond(x_t))
        assert seen[0][1].tolist() == t.tolist()
        target = noise if prediction == "epsilon" else x0
        assert loss.item() == pytest.approx(((0.5 - target) ** 2).mean().item(), rel=1e-6)
        seen.clear()
        d.training_loss(model, x0, torch.Generator().manual_seed(4))
        torch.testing.assert_close(seen[0][0], x_t)


def test_p_sample_loop_by_hand_trajectory_condition_and_warm_start():
    d = GaussianDiffusion(torch.tensor([0.1, 0.2, 0.3]))
    model = lambda x, t: 0.5 * x + 0.1 * t[:, None].float()
    cond = lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1)   # pin the first coordinate to 0
    g = torch.Generator().manual_seed(0)
    x = cond(torch.randn((2, 2), generator=g))
    want = [x]
    for t in (2, 1, 0):
        tt = torch.full((2,), t)
        mean, var, _ = d.p_mean_variance(model, x, tt)
        x = mean if t == 0 else mean + var.sqrt() * torch.randn((2, 2), generator=g)
        x = cond(x)
        want.append(x)
    traj = d.p_sample_loop(model, (2, 2), generator=torch.Generator().manual_seed(0), return_trajectory=True,
                           condition=cond)
    torch.testing.assert_close(traj, torch.stack(want))
    last = d.p_sample_loop(model, (2, 2), generator=torch.Generator().manual_seed(0), condition=cond)
    torch.testing.assert_close(last, want[-1])
    # warm start at t_start = 1: x_T is used as given (after the condition), then the steps 1, 0
    x1 = torch.tensor([[0.3, -0.4], [1.0, 2.0]])
    traj = d.p_sample_loop(model, (2, 2), generator=torch.Generator().manual_seed(5), x_T=x1, t_start=1,
                           return_trajectory=True)
    assert traj.shape == (3, 2, 2)
    torch.testing.assert_close(traj[0], x1)
    mean, var, _ = d.p_mean_variance(model, x1, torch.full((2,), 1))
    torch.testing.assert_close(traj[1], mean + var.sqrt() * torch.randn((2, 2), generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(traj[2], d.p_mean_variance(model, traj[1], torch.zeros(2, dtype=torch.long))[0])
    assert d.p_sample_loop(model, (2, 2), x_T=x1, t_start=2, return_trajectory=True).shape == (4, 2, 2)
    with pytest.raises(ValueError, match=r"^t_start must be a diffusion step in \[0, 2\], got 3$"):
        d.p_sample_loop(model, (2, 2), x_T=x1, t_start=3)
    with pytest.raises(ValueError, match=r"^a warm start \(t_start\) needs x_T, the sample at step t_start$"):
        d.p_sample_loop(model, (2, 2), t_start=0)


def test_ddim_by_hand_with_eta_condition_and_warm_start():
    d = GaussianDiffusion(cosine_beta_schedule(10))
    model = lambda x, t: 0.3 * x - 0.05 * t[:, None].float()
    cond = lambda x: x.clamp(-1.5, 1.5)
    for eta, spacing in ((0.0, "uniform"), (0.7, "quadratic")):
        g = torch.Generator().manual_seed(1)
        x = cond(torch.randn((3, 2), generator=g))
        want = [x]
        steps = d.ddim_timesteps(4, spacing)
        for i, t in enumerate(steps):
            s = steps[i + 1] if i + 1 < len(steps) else -1
            eps, x0 = d.predict_eps_x0(model, x, torch.full((3,), t))
            a_t = d.alphas_cumprod[t].double()
            a_s = d.alphas_cumprod[s].double() if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = (a_s.sqrt() * x0 + max(1 - a_s - sigma ** 2, 0) ** 0.5 * eps).float()
            if eta > 0 and s >= 0:
                x = x + sigma * torch.randn((3, 2), generator=g)
            x = cond(x)
            want.append(x)
        traj = d.ddim_sample_loop(model, (3, 2), 4, eta=eta, generator=torch.Generator().manual_seed(1),
                                  return_trajectory=True, spacing=spacing, condition=cond)
        torch.testing.assert_close(traj, torch.stack(want), rtol=1e-5, atol=1e-5)
        last = d.ddim_sample_loop(model, (3, 2), 4, eta=eta, generator=torch.Generator().manual_seed(1),
                                  spacing=spacing, condition=cond)
        torch.testing.assert_close(last, want[-1], rtol=1e-5, atol=1e-5)
    x5 = torch.full((3, 2), 0.5)
    traj = d.ddim_sample_loop(model, (3, 2), 2, x_T=x5, t_start=5, return_trajectory=True)
    assert traj.shape == (3, 3, 2)
    torch.testing.assert_close(traj[0], x5)
    assert d.ddim_timesteps(2, t_start=5) == [5, 2]


def test_ddim_timesteps_bounds_and_messages():
    d = GaussianDiffusion(cosine_beta_schedule(10))
    assert d.ddim_timesteps(1) == [9] and d.ddim_timesteps(10) == list(range(9, -1, -1))
    assert d.ddim_timesteps(3, t_start=0 + 2) == [2, 1, 0] and d.ddim_timesteps(1, t_start=0) == [0]
    assert d.ddim_timesteps(4, "quadratic") == [9, 5, 1, 0] and d.ddim_timesteps(7, "quadratic") == [9, 6, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match=r"^n_steps must be in \[1, 10\], got 11$"):
        d.ddim_timesteps(11)
    with pytest.raises(ValueError, match=r"^n_steps must be in \[1, 3\], got 4$"):
        d.ddim_timesteps(4, t_start=2)
    with pytest.raises(ValueError, match=r"^unknown spacing 'cubic'; choose 'uniform' or 'quadratic'$"):
        d.ddim_timesteps(2, "cubic")


def test_respace_keeps_prediction_and_clipping_and_forwards_extra_arguments():
    from tutorial_lib.diffusion.ddpm import respace, respaced_model

    full = GaussianDiffusion(cosine_beta_schedule(20), prediction="x0", clip_denoised=1.5)
    short, steps = respace(full, 4)
    assert (short.prediction, short.clip_denoised, short.n_diffusion_steps) == ("x0", 1.5, 4)
    assert steps.tolist() == [4, 9, 14, 19] and steps.dtype == torch.long and short.device == full.device
    torch.testing.assert_close(short.alphas_cumprod, full.alphas_cumprod[steps])
    got = respaced_model(lambda x, t, c=None: (t, c), steps)(torch.zeros(2), torch.tensor([0, 3]), "cond")
    assert got[0].tolist() == [4, 19] and got[1] == "cond"
