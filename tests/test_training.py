"""The training loop's pieces that the end-to-end tests (test_checkpoint.py) cannot see: the EMA update's weights."""

import pytest
import torch

from tutorial_lib.core.training import TrainConfig, update_ema


def _pair():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():                        # every weight differs between the two
        for p in list(model.parameters()) + list(ema.parameters()):
            p.copy_(torch.randn(p.shape))
    return model, ema


@pytest.mark.parametrize("decay", [0.9, 0.999, 0.0])
def test_ema_moves_a_share_one_minus_decay_towards_the_weights(decay):
    """``ema <- decay * ema + (1 - decay) * theta``: with decay 0.9 the EMA moves a tenth of the way."""
    model, ema = _pair()
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, model, decay)
    for e, b, p in zip(ema.parameters(), before, model.parameters()):
        torch.testing.assert_close(e, decay * b + (1 - decay) * p, rtol=0, atol=1e-6)
        if decay > 0:
            assert not torch.equal(e, p)


def test_ema_copies_the_buffers():
    model, ema = _pair()
    model.train()(torch.randn(16, 3))           # moves the batch-norm running statistics
    update_ema(ema, model, 0.9)
    for e, b in zip(ema.buffers(), model.buffers()):
        torch.testing.assert_close(e, b, rtol=0, atol=0)


def test_ema_converges_to_fixed_weights():
    model, ema = _pair()
    for _ in range(200):
        update_ema(ema, model, 0.95)             # 0.95 ** 200 ~ 3.5e-5 of the start is left
    for e, p in zip(ema.parameters(), model.parameters()):
        torch.testing.assert_close(e, p, rtol=0, atol=1e-3)


@pytest.mark.parametrize("field, value, message", [
    ("ema_decay", 1.0, "ema_decay must lie in"), ("ema_decay", -0.1, "ema_decay must lie in"),
    ("n_steps", 0, "n_steps must be positive"), ("batch_size", 0, "batch_size must be positive"),
    ("log_every", 0, "log_every must be positive"), ("checkpoint_every", 0, "checkpoint_every must be positive"),
])
def test_train_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})
    TrainConfig(ema_decay=0.0)
