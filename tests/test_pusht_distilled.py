"""Tests of the one-step Push-T student (Part 5, compute): the teacher's labels, the pairs, the
student's loss and the policy's units."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents.pusht_distilled import (DistilledPolicy, DistilledPolicyConfig, build_student,
                                                 distillation_data, distillation_loss, teacher_labels)
from tutorial_lib.agents.pusht_policy import load_policy

SMALL = DistilledPolicyConfig(max_windows=6, noises_per_window=2, label_batch=4)


@pytest.fixture(scope="module")
def teacher():
    return load_policy("pusht-diffusion-policy", device="cpu", ddim_steps=SMALL.teacher_ddim_steps)


@pytest.fixture(scope="module")
def rows():
    return distillation_data(SMALL)


def test_teacher_labels_are_the_policys_ddim_chunks_from_the_same_noise(teacher):
    o = torch.randn(3, 40, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    z = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(2))
    # the policy draws its initial noise from its generator: give it the same draw
    teacher.generator.manual_seed(2)
    expected = teacher._predict(o)
    assert torch.allclose(teacher_labels(teacher, o, z), expected, atol=1e-6)
    assert teacher_labels(teacher, o, z).abs().max() <= 1.0          # clipped, as the teacher's x0 is
    with pytest.raises(ValueError, match="z must have shape"):
        teacher_labels(teacher, o, z[:2])


def test_distillation_data_rows_are_observation_noise_and_label(teacher, rows):
    assert rows.shape == (6 * 2, 40 + 32 + 32)
    assert torch.equal(rows, distillation_data(SMALL))                  # the same pairs on a resumed run
    o, z, a = rows[:, :40], rows[:, 40:72].view(-1, 16, 2), rows[:, 72:].view(-1, 16, 2)
    assert torch.equal(o[0], o[1]) and not torch.equal(z[0], z[1])      # two noises per window
    assert torch.allclose(a, teacher_labels(teacher, o, z), atol=1e-5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="noises_per_window"):
        DistilledPolicyConfig(noises_per_window=0)
    with pytest.raises(ValueError, match="max_windows"):
        DistilledPolicyConfig(max_windows=-1)


def test_the_student_starts_as_the_teachers_network_and_its_loss_is_the_regression(teacher, rows):
    student = build_student(SMALL)
    for (name, p), q in zip(student.state_dict().items(), teacher.net.state_dict().values()):
        assert torch.equal(p, q), name
    cold = build_student(DistilledPolicyConfig(warm_start=False))
    assert not all(torch.equal(p, q) for p, q in zip(cold.state_dict().values(), teacher.net.state_dict().values()))
    loss = distillation_loss(SMALL)(student, rows)
    o, z, a = rows[:, :40], rows[:, 40:72].view(-1, 16, 2), rows[:, 72:].view(-1, 16, 2)
    t = torch.full((len(z),), 99, dtype=torch.long)
    assert loss.item() == pytest.approx(((student(z, t, o) - a) ** 2).mean().item(), rel=1e-6)


class _Fixed(torch.nn.Module):
    """A stand-in student whose output is known: the noise itself, times two."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.cond_dim = 40

    def forward(self, x, t, cond):
        assert (t == 99).all()
        return 2 * x * self.w


def test_the_distilled_policy_returns_pixels_from_one_clipped_evaluation(teacher):
    policy = DistilledPolicy(_Fixed(), teacher.cfg, teacher.obs_normalizer, teacher.action_normalizer,
                             generator=torch.Generator().manual_seed(3), trace=False)
    history = np.zeros((2, 20), np.float32) + 250.0
    chunk = policy.predict_chunk(history)
    z = torch.randn((1, 16, 2), generator=torch.Generator().manual_seed(3))
    expected = teacher.action_normalizer.unnormalize((2 * z).clamp(-1, 1))[0].numpy()
    assert chunk.shape == (16, 2)
    np.testing.assert_allclose(chunk, expected, rtol=1e-5)
    lo, hi = teacher.action_normalizer.unnormalize(torch.tensor([[-1.0, -1.0], [1.0, 1.0]])).numpy()
    assert (chunk >= lo - 1e-4).all() and (chunk <= hi + 1e-4).all()
