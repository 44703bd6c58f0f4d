"""Part 5, computational cost: the training records, and that a k-step sampler costs k network calls."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.pusht_policy import load_policy
from tutorial_lib.experiments.limitations_compute import RespacedDDPMPolicy, _ddpm_policy, training_cost


def test_training_cost_reads_the_manifest():
    cost = training_cost()
    dp, bc = cost["pusht"]["diffusion_policy"], cost["pusht"]["bc"]
    assert dp["steps"] > 0 and bc["steps"] > 0
    assert dp["seconds_per_1k_steps"] == pytest.approx(1000 * dp["train_seconds"] / dp["steps"], abs=0.1)
    assert set(cost["maze"]) == {"umaze", "medium", "large"}


class _Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args):
        self.calls += 1
        return self.net(*args)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_a_k_step_chunk_costs_k_network_evaluations(sampler, k):
    policy = load_policy("pusht-diffusion-policy", ddim_steps=k) if sampler == "ddim" else _ddpm_policy(k)
    counter = _Counting(policy.denoiser)
    policy.denoiser = counter
    obs = np.full((policy.cfg.n_obs_steps, 20), 256.0, dtype=np.float32)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (policy.cfg.horizon, 2) and np.isfinite(chunk).all()
    assert counter.calls == k


def test_ddpm_policy_on_the_full_chain_is_the_trained_chain():
    p = _ddpm_policy(100)
    assert isinstance(p, RespacedDDPMPolicy)
    from tutorial_lib.diffusion.ddpm import respace

    short, steps = respace(p.diffusion, 100)
    assert steps.tolist() == list(range(100))
    torch.testing.assert_close(short.alphas_cumprod, p.diffusion.alphas_cumprod)
