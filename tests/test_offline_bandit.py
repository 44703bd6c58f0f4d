"""The offline 2D bandit: reward and support on known points, Q extrapolation, CQL, argmax."""

import pytest
import torch

from tutorial_lib.experiments.offline_bandit import (BanditConfig, QNetwork, argmax_q, behaviour_dataset, cql_penalty, fit_q,
                                         ood_mask, true_reward)


def test_reward_and_support_on_known_points():
    a = torch.tensor([[0.8, 0.8], [-0.8, 0.8], [-0.8, -0.8], [0.8 + 0.39, 0.8], [0.8 + 0.41, 0.8],
                      [0.0, 0.0], [1.5, 1.5]])
    assert ood_mask(a).tolist() == [False, False, False, False, True, True, True]
    assert torch.allclose(true_reward(a), torch.tensor([0.8, 0.0, -0.8, 0.995, -1.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match=r"actions must have shape \(N, 2\)"):
        true_reward(torch.zeros(3))


def test_behaviour_data_repeat_by_seed_and_follow_the_mode_weights():
    a1, r1 = behaviour_dataset(4000, seed=0)
    a2, r2 = behaviour_dataset(4000, seed=0)
    assert torch.equal(a1, a2) and torch.equal(r1, r2)
    assert not torch.equal(a1, behaviour_dataset(4000, seed=1)[0])
    best = ((a1 - torch.tensor([0.8, 0.8])).norm(dim=1) < 0.4).float().mean().item()
    ordinary = ((a1 - torch.tensor([-0.8, 0.8])).norm(dim=1) < 0.4).float().mean().item()
    assert 0.08 < best < 0.12 and 0.37 < ordinary < 0.43
    assert ood_mask(a1).float().mean() < 0.005
    # logged rewards are the true reward plus small noise
    assert (r1 - true_reward(a1)).std() < 0.06


def test_cql_penalty_is_zero_for_a_constant_q_and_negative_for_a_q_peaked_on_the_data():
    data = torch.tensor([[0.8, 0.8]]).expand(64, 2)
    g = torch.Generator().manual_seed(0)

    class Bump(QNetwork):
        def forward(self, a):
            return 3 * torch.exp(-((a - 0.8) ** 2).sum(-1) / 0.02)

    class Constant(QNetwork):
        def forward(self, a):
            return torch.full((len(a),), 2.0)

    assert abs(cql_penalty(Constant(), data, 512, g).item()) < 1e-5
    assert cql_penalty(Bump(), data, 512, g).item() < -2.5
    # a Q that is high off the data is penalised
    assert cql_penalty(Bump(), -data, 512, g).item() > 0


def test_argmax_q_finds_the_maximum_and_stops_at_the_box():
    class Bowl(QNetwork):
        def forward(self, a):
            return -((a - torch.tensor([0.3, -0.2])) ** 2).sum(-1)

    class Ramp(QNetwork):
        def forward(self, a):
            return a.sum(-1)

    starts = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(argmax_q(Bowl(), starts, n_steps=300), torch.tensor([0.3, -0.2]).expand(4, 2), atol=1e-2)
    assert torch.allclose(argmax_q(Ramp(), starts), torch.full((4, 2), 1.5))


def test_a_regression_q_extrapolates_upwards_off_the_data_and_cql_does_not():
    cfg = BanditConfig(n_data=1000, q_steps=400)
    a, r = behaviour_dataset(cfg.n_data)
    probe = torch.tensor([[0.8, 0.8], [-0.8, 0.8], [1.5, 1.5]])
    q_net, cql_net = fit_q(a, r, cfg), fit_q(a, r, cfg, alpha=1.0)
    with torch.no_grad():
        q, q_cql = q_net(probe), cql_net(probe)
    assert q[0] > q[1] + 0.5, "the regression Q ranks the best mode above an ordinary one"
    assert q[2] > q[0], "and it believes the unseen corner is better still"
    assert q_cql[2] < q_cql[0] - 1, "CQL pushes the unseen corner down"
    assert q_cql[1] > q_cql[0], "and, with alpha = 1, the rare best mode below a frequent ordinary one"


def test_diffusion_select_keeps_the_candidate_with_the_highest_q():
    from tutorial_lib.diffusion.ddpm import GaussianDiffusion, make_beta_schedule
    from tutorial_lib.experiments.offline_bandit import diffusion_select

    class Ramp(QNetwork):
        def forward(self, a):
            return a[:, 0] - 2 * a[:, 1]

    diffusion = GaussianDiffusion(make_beta_schedule("cosine", 10))
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731  (any denoiser will do)
    chosen = diffusion_select(Ramp(), model, diffusion, 5, 7, generator=torch.Generator().manual_seed(0))
    cand = diffusion.p_sample_loop(model, (35, 2), generator=torch.Generator().manual_seed(0)).view(5, 7, 2)
    expected = cand[torch.arange(5), (cand[..., 0] - 2 * cand[..., 1]).argmax(1)]
    assert chosen.shape == (5, 2) and torch.equal(chosen, expected)
