"""Our DDPM and DDIM against a reference implementation: Hugging Face ``diffusers``.

``diffusers`` is a test-only dependency (``pip install -e .[test]``). Conventions matched here:

- schedules: our ``"linear"`` at T = 1000 is diffusers' ``beta_schedule="linear"`` with
  ``beta_start=1e-4, beta_end=0.02``; our ``"cosine"`` is its ``"squaredcos_cap_v2"`` (both clip
  beta at 0.999);
- DDPM: ``variance_type="fixed_small"`` (the posterior variance, our ``posterior_variance``),
  ``prediction_type="epsilon"`` or ``"sample"`` (our ``"x0"``), and ``clip_sample`` with
  ``clip_sample_range`` as our ``clip_denoised``; no thresholding;
- DDIM: ``timestep_spacing="trailing"`` (our ``"uniform"``: 999, 899, ..., 99 for 10 of 1000
  steps), ``set_alpha_to_one=True`` (bar-alpha of the step after the last is 1, as ours), and
  with clipping ``use_clipped_model_output=True`` (we recompute eps from the clipped x0).

diffusers computes the schedule in float32, we in float64 then store float32: the tolerances
below are float32's, grown by the 1000-term cumulative product.
"""

import pytest
import torch

from tutorial_lib.diffusion.ddpm import GaussianDiffusion, make_beta_schedule

diffusers = pytest.importorskip("diffusers", reason="the reference implementation (a test dependency)")

T = 1000
SCHEDULES = [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]


def reference_ddpm(ours: str, theirs: str, prediction="epsilon", clip=None):
    kwargs = dict(num_train_timesteps=T, beta_schedule=theirs, variance_type="fixed_small",
                  prediction_type={"epsilon": "epsilon", "x0": "sample"}[prediction],
                  clip_sample=clip is not None, clip_sample_range=clip or 1.0)
    if theirs == "linear":
        kwargs.update(beta_start=1e-4, beta_end=0.02)
    return diffusers.DDPMScheduler(**kwargs), GaussianDiffusion(make_beta_schedule(ours, T), prediction, clip)


def reference_ddim(ours: str, theirs: str, prediction="epsilon", clip=None):
    kwargs = dict(num_train_timesteps=T, beta_schedule=theirs, timestep_spacing="trailing",
                  set_alpha_to_one=True, steps_offset=0,
                  prediction_type={"epsilon": "epsilon", "x0": "sample"}[prediction],
                  clip_sample=clip is not None, clip_sample_range=clip or 1.0)
    if theirs == "linear":
        kwargs.update(beta_start=1e-4, beta_end=0.02)
    return diffusers.DDIMScheduler(**kwargs), GaussianDiffusion(make_beta_schedule(ours, T), prediction, clip)


def toy_model(x: torch.Tensor, t) -> torch.Tensor:
    """A fixed, smooth stand-in for a trained network: ``(B, D), t -> (B, D)``."""
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(0.7 * x.flip(-1) + 0.3 * x) * (0.5 + t / T)


@pytest.mark.parametrize("ours, theirs", SCHEDULES)
def test_schedules_match(ours, theirs):
    ref, dif = reference_ddpm(ours, theirs)
    torch.testing.assert_close(dif.betas, ref.betas.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dif.alphas_cumprod, ref.alphas_cumprod.float(), rtol=2e-4, atol=1e-7)
    # the posterior variance of q(x_{t-1} | x_t, x_0) at every t >= 1 (both set it to beta_0 * 0 at t = 0)
    var_ref = torch.stack([ref._get_variance(t) for t in range(1, T)])
    # float32 cancellation in 1 - bar-alpha at small t costs diffusers about 4e-4 relative there
    torch.testing.assert_close(dif.posterior_variance[1:], var_ref.float(), rtol=1e-3, atol=1e-8)


@pytest.mark.parametrize("ours, theirs", SCHEDULES)
@pytest.mark.parametrize("prediction, clip", [("epsilon", None), ("epsilon", 1.0), ("x0", None)])
def test_ddpm_step_matches(ours, theirs, prediction, clip):
    ref, dif = reference_ddpm(ours, theirs, prediction, clip)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 1.5
    for t in (999, 700, 300, 50, 1, 0):
        out = toy_model(x, t)
        mine = dif.p_sample(lambda xx, tt: out, x, t, generator=torch.Generator().manual_seed(t))
        theirs_ = ref.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(mine, theirs_, rtol=1e-3, atol=2e-4, msg=f"DDPM step at t = {t}")


@pytest.mark.parametrize("ours, theirs", SCHEDULES)
def test_ddpm_posterior_mean_matches(ours, theirs):
    """The mean of p(x_{t-1} | x_t): one step with the noise switched off (t = 0 draws none)."""
    ref, dif = reference_ddpm(ours, theirs)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    for t in (999, 500, 10):
        out = toy_model(x, t)
        mean, _, _ = dif.p_mean_variance(lambda xx, tt: out, x, torch.full((32,), t))
        ref_mean = ref.step(out, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(mean, ref_mean - ref._get_variance(t).sqrt() * noise, rtol=1e-3, atol=2e-4)


@pytest.mark.parametrize("ours, theirs", SCHEDULES)
@pytest.mark.parametrize("n_steps", [10, 50])
@pytest.mark.parametrize("eta, prediction, clip", [(0.0, "epsilon", None), (0.0, "epsilon", 1.0), (1.0, "epsilon", None),
                                                   (0.0, "x0", 1.0)])
def test_ddim_loop_matches(ours, theirs, n_steps, eta, prediction, clip):
    ref, dif = reference_ddim(ours, theirs, prediction, clip)
    ref.set_timesteps(n_steps)
    assert ref.timesteps.tolist() == dif.ddim_timesteps(n_steps, "uniform")
    x_T = torch.randn(128, 2, generator=torch.Generator().manual_seed(2))
    mine = dif.ddim_sample_loop(toy_model, x_T.shape, n_steps, eta=eta, x_T=x_T.clone(),
                                generator=torch.Generator().manual_seed(3))
    x, g = x_T.clone(), torch.Generator().manual_seed(3)
    for t in ref.timesteps:
        x = ref.step(toy_model(x, int(t)), int(t), x, eta=eta, use_clipped_model_output=clip is not None,
                     generator=g).prev_sample
    torch.testing.assert_close(mine, x, rtol=1e-3, atol=5e-4)


@pytest.mark.parametrize("ours, theirs", SCHEDULES)
def test_full_ddpm_loop_matches(ours, theirs):
    ref, dif = reference_ddpm(ours, theirs)
    ref.set_timesteps(T)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(4))
    mine = dif.p_sample_loop(toy_model, x_T.shape, x_T=x_T.clone(), generator=torch.Generator().manual_seed(5))
    x, g = x_T.clone(), torch.Generator().manual_seed(5)
    for t in ref.timesteps:
        x = ref.step(toy_model(x, int(t)), int(t), x, generator=g).prev_sample
    torch.testing.assert_close(mine, x, rtol=1e-3, atol=1e-3)
