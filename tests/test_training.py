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


# ----------------------------------------------------------------------------- the loop itself
class _Scalar(torch.nn.Module):
    """One weight ``w``; the loss ``w`` has gradient 1 everywhere."""

    def __init__(self, w: float = 1.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w]))


def _scalar_fit(n_steps=1, path=None, name="scalar", recipe_config=None, hint=None, **cfg):
    """``train`` on ``_Scalar`` with a loss of ``w``; ``hint`` passed only when given (to see train's default)."""
    from tutorial_lib.core.training import train

    config = TrainConfig(n_steps=n_steps, batch_size=1, log_every=1, grad_clip=None, **cfg)
    return train(_Scalar(), lambda m, batch, g: m.w.sum(), lambda b, g: torch.zeros(b), config, name=name,
                 recipe_config=recipe_config, checkpoint_path=path, device="cpu", progress=False,
                 **({} if hint is None else {"hint": hint}))


@pytest.mark.parametrize("lr", [0.05, 0.2])
def test_train_takes_adam_steps_of_the_configured_learning_rate(lr):
    # a constant gradient of 1: each of Adam's steps moves the weight by lr (m_hat / sqrt(v_hat) = 1)
    run = _scalar_fit(n_steps=3, lr=lr)
    torch.testing.assert_close(run.model.w, torch.tensor([1.0 - 3 * lr]), rtol=0, atol=1e-6)
    assert run.history["loss"] == pytest.approx([1.0, 1.0 - lr, 1.0 - 2 * lr], abs=1e-6)


def test_the_ema_model_is_a_frozen_copy_that_follows_the_decay():
    run = _scalar_fit(n_steps=2, lr=0.1, ema_decay=0.5)
    assert not any(p.requires_grad for p in run.ema_model.parameters())
    assert all(p.requires_grad for p in run.model.parameters())
    # ema_1 = 0.5 * 1 + 0.5 * 0.9 = 0.95; ema_2 = 0.5 * 0.95 + 0.5 * 0.8 = 0.875
    torch.testing.assert_close(run.ema_model.w, torch.tensor([0.875]), rtol=0, atol=1e-6)
    assert not run.model.training and not run.ema_model.training


def test_without_a_recipe_config_the_checkpoint_keeps_the_train_config(tmp_path):
    from tutorial_lib.core.checkpoint import load_checkpoint

    _scalar_fit(n_steps=2, path=tmp_path / "s.pt", lr=0.1)
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt["config"]["lr"] == 0.1 and ckpt["config"]["batch_size"] == 1 and ckpt["name"] == "scalar"


def test_resuming_checks_the_run_name_and_config_and_ends_errors_with_the_hint_only_when_given(tmp_path):
    from tutorial_lib.core.checkpoint import CheckpointError

    path = tmp_path / "s.pt"
    _scalar_fit(n_steps=2, path=path, lr=0.1)
    with pytest.raises(CheckpointError) as err:
        _scalar_fit(n_steps=3, path=path, name="other", lr=0.1, hint="delete it to start over")
    assert "'scalar'" in str(err.value) and str(err.value).endswith("expected 'other'\ndelete it to start over")
    with pytest.raises(CheckpointError) as err:
        _scalar_fit(n_steps=3, path=path, name="other", lr=0.1)
    assert str(err.value).endswith("expected 'other'")
    with pytest.raises(CheckpointError, match="lr: checkpoint has 0.1, expected 0.2"):
        _scalar_fit(n_steps=3, path=path, lr=0.2)
    assert _scalar_fit(n_steps=3, path=path, lr=0.1).resumed_from == 2     # a longer run is allowed


def test_a_checkpoint_without_ema_weights_resumes_with_the_model_weights_as_ema(tmp_path):
    from tutorial_lib.core.checkpoint import save_checkpoint

    model = _Scalar(0.25)
    path = tmp_path / "no_ema.pt"
    save_checkpoint(path, name="scalar", config=TrainConfig(n_steps=2, batch_size=1, log_every=1, grad_clip=None,
                                                            lr=0.1), model=model, step=2,
                    history={"step": [1, 2], "loss": [1.0, 0.9], "wall_time": [0.0, 0.0]})
    run = _scalar_fit(n_steps=2, path=path, lr=0.1)
    assert run.resumed_from == 2 and run.step == 2
    torch.testing.assert_close(run.ema_model.w, torch.tensor([0.25]), rtol=0, atol=0)
    torch.testing.assert_close(run.model.w, torch.tensor([0.25]), rtol=0, atol=0)


def test_bf16_precision_runs_the_loss_under_autocast_and_fp32_does_not():
    from tutorial_lib.core.training import train

    seen = []

    def loss(m, batch, g):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return m.w.sum()

    for precision in ("bf16", "fp32"):
        train(_Scalar(), loss, lambda b, g: torch.zeros(b), TrainConfig(n_steps=1, batch_size=1, log_every=1),
              name="scalar", device="cpu", progress=False, precision=precision)
    assert seen == [True, False]


def test_the_loss_history_averages_each_logging_window_and_logs_the_last_step():
    # log_every 2 over 5 steps: windows {1, 2}, {3, 4} and the last step 5 alone; the loss is w = 1 - k lr
    from tutorial_lib.core.training import train

    config = TrainConfig(n_steps=5, batch_size=1, log_every=2, grad_clip=None, lr=0.1)
    run = train(_Scalar(), lambda m, b, g: m.w.sum(), lambda b, g: torch.zeros(b), config, name="scalar",
                device="cpu", progress=False)
    assert run.history["step"] == [2, 4, 5]
    assert run.history["loss"] == pytest.approx([0.95, 0.75, 0.6], abs=1e-6)
    wall = run.history["wall_time"]
    assert 0.0 <= wall[0] < 0.9 and wall == sorted(wall) and wall[-1] < 60.0


def test_a_resumed_run_continues_the_wall_clock_and_a_finished_checkpoint_has_no_pending_window(tmp_path):
    import time

    from tutorial_lib.core.checkpoint import load_checkpoint
    from tutorial_lib.core.training import train

    def fit(n_steps):           # each step sleeps 50 ms, so the logged times are 50 ms apart at least
        def loss(m, b, g):
            time.sleep(0.05)
            return m.w.sum()
        cfg = TrainConfig(n_steps=n_steps, batch_size=1, log_every=1, lr=0.1)
        return train(_Scalar(), loss, lambda b, g: torch.zeros(b), cfg, name="scalar", checkpoint_path=path,
                     device="cpu", progress=False)

    path = tmp_path / "w.pt"
    first = fit(3)
    ckpt = load_checkpoint(path)
    assert "pending" not in ckpt["history"] and ckpt["history"]["wall_time"] == first.history["wall_time"]
    more = fit(5)
    assert more.history["wall_time"][:3] == first.history["wall_time"]
    assert more.history["wall_time"][3] >= first.history["wall_time"][-1] + 0.045   # continues from the last time


def test_checkpoints_are_written_every_checkpoint_every_steps_with_the_extra(tmp_path):
    from tutorial_lib.core.checkpoint import load_checkpoint
    from tutorial_lib.core.training import train

    path, seen = tmp_path / "k.pt", []

    def loss(m, b, g):          # called before each step: record the step of the checkpoint on disk
        seen.append(load_checkpoint(path)["step"] if path.exists() else None)
        return m.w.sum()

    config = TrainConfig(n_steps=5, batch_size=1, log_every=1, checkpoint_every=2, lr=0.1)
    train(_Scalar(), loss, lambda b, g: torch.zeros(b), config, name="scalar", checkpoint_path=path, device="cpu",
          progress=False, extra={"scale": 2.5})
    assert seen == [None, None, 2, 2, 4]
    assert load_checkpoint(path)["step"] == 5 and load_checkpoint(path)["extra"] == {"scale": 2.5}


def test_gradients_are_clipped_to_grad_clip_before_adam():
    # gradients 10 then 1: clipped to norm 1 both are 1, so Adam moves w by lr twice; unclipped it does not
    from tutorial_lib.core.training import train

    def fit(grad_clip):
        calls = []

        def loss(m, b, g):
            calls.append(1)
            return (10.0 if len(calls) == 1 else 1.0) * m.w.sum()

        cfg = TrainConfig(n_steps=2, batch_size=1, log_every=1, grad_clip=grad_clip, lr=0.1)
        return train(_Scalar(), loss, lambda b, g: torch.zeros(b), cfg, name="scalar", device="cpu",
                     progress=False).model.w.item()

    assert fit(1.0) == pytest.approx(1.0 - 0.2, abs=1e-6)
    assert abs(fit(None) - 0.8) > 1e-3


def test_a_parameter_without_a_gradient_is_left_alone():
    # zero_grad(set_to_none=True): a weight the loss stops using has no gradient, so Adam skips it
    # (with zero gradients instead, its momentum would keep moving it)
    from tutorial_lib.core.training import train

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Parameter(torch.tensor([1.0])), torch.nn.Parameter(torch.tensor([1.0]))

    calls = []

    def loss(m, b, g):
        calls.append(1)
        return (m.a + m.b).sum() if len(calls) == 1 else m.b.sum()

    cfg = TrainConfig(n_steps=3, batch_size=1, log_every=1, grad_clip=None, lr=0.1)
    run = train(Two(), loss, lambda b, g: torch.zeros(b), cfg, name="two", device="cpu", progress=False)
    assert run.model.a.item() == pytest.approx(0.9, abs=1e-6) and run.model.b.item() == pytest.approx(0.7, abs=1e-6)


def test_a_loss_that_is_not_finite_stops_training_with_advice():
    from tutorial_lib.core.training import train

    cfg = TrainConfig(n_steps=3, batch_size=1, log_every=1)
    with pytest.raises(FloatingPointError, match=r"scalar: loss became nan at step 0; lower the learning rate or "
                                                 r"check the data scaling$"):
        train(_Scalar(), lambda m, b, g: m.w.sum() * float("nan"), lambda b, g: torch.zeros(b), cfg, name="scalar",
              device="cpu", progress=False)


def test_the_progress_bar_shows_when_asked_counts_the_steps_shows_the_loss_and_resumes(tmp_path, capfd):
    # the bars in a fresh interpreter: tqdm's lock does not survive a fork (mutation testing forks the test
    # process); TQDM_MININTERVAL=0 draws every update, so the test reads each state the bar went through
    import re
    import subprocess
    import sys

    from conftest import subprocess_env
    from tutorial_lib.core.training import train

    # no bar, here in the test's own interpreter (which also tells `make mutate` that this test runs `train`)
    train(_Scalar(), lambda m, b, g: m.w.sum(), lambda b, g: torch.zeros(b), TrainConfig(n_steps=2, log_every=1),
          name="quiet", device="cpu", progress=False)
    assert capfd.readouterr().err == ""

    code = ("import sys, torch\n"
            "from tutorial_lib.core.training import TrainConfig, train\n"
            "class S(torch.nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.w = torch.nn.Parameter(torch.ones(1))\n"
            "loss = lambda m, b, g: 0.0 * m.w.sum() + 0.5\n"
            "batch = lambda b, g: torch.zeros(b)\n"
            "for n_steps in (2, 4):   # 2 steps, then resumed to 4, with the default progress setting\n"
            "    train(S(), loss, batch, TrainConfig(n_steps=n_steps, log_every=2), name='bar', device='cpu',\n"
            "          checkpoint_path=sys.argv[1])\n")
    err = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bar.pt")], capture_output=True, check=True,
                         timeout=120, env=subprocess_env(TQDM_MININTERVAL="0")).stderr.decode()  # keeps the \r
    states = [s.strip() for s in err.split("\r") if s.strip()]
    assert states and all(s.startswith("bar:") for s in states), f"only the asked-for bar shows: {states}"
    counts = [tuple(map(int, re.search(r"\| *(\d+)/(\d+) ", s).groups())) for s in states]
    first, second = [c for c in counts if c[1] == 2], [c for c in counts if c[1] == 4]
    assert sorted({c[0] for c in first}) == [0, 1, 2], f"the bar counts one step per step: {states}"
    assert sorted({c[0] for c in second}) == [2, 3, 4], "a resumed bar starts at the step reached"
    losses = set(re.findall(r"loss=([^\]]+)\]", err))
    assert losses == {"0.5000"}, f"the bar shows the mean loss of the logging window, not {losses}"
    assert err.endswith("\r"), "the finished bar is cleared (leave=False), not left on screen"


def test_a_checkpoint_from_another_device_type_resumes_from_a_reseeded_generator_with_a_warning(tmp_path):
    # a CUDA generator's state is 16 bytes, a CPU generator's 5056: a GPU run resumed on a CPU
    # cannot continue its stream, and goes on from a generator seeded by (seed, step)
    import warnings

    from tutorial_lib.core.training import train

    path, drawn = tmp_path / "s.pt", []

    def fit(n_steps):
        def batch(b, g):
            drawn.append(torch.rand(b, generator=g))
            return drawn[-1]
        config = TrainConfig(n_steps=n_steps, batch_size=1, log_every=1, grad_clip=None, lr=0.1, seed=3)
        return train(_Scalar(), lambda m, b, g: m.w.sum() + 0 * b.sum(), batch, config, name="scalar",
                     checkpoint_path=path, device="cpu", progress=False)

    fit(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # the same device type: no warning, the exact stream
        fit(3)
    ckpt = torch.load(path, weights_only=True)
    ckpt["rng_state"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(ckpt, path)
    drawn.clear()
    with pytest.warns(UserWarning, match=r"scalar: the checkpoint's random state \(16 bytes\) comes from a "
                                         r"generator of another device type than cpu; the batches and noise go on from a "
                                         r"generator reseeded with \(3, step 3\), so the run is not bit-identical to "
                                         r"an uninterrupted one$"):
        run = fit(4)
    assert run.resumed_from == 3 and run.step == 4
    expected = torch.rand(1, generator=torch.Generator().manual_seed(3 * 1_000_003 + 3))
    torch.testing.assert_close(drawn[0], expected, rtol=0, atol=0)
