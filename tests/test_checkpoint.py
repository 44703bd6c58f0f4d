"""Checkpoints: round trip, atomic writes, clear errors, and resumable training."""

import dataclasses

import pytest
import torch

from tutorial_lib.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tutorial_lib.core.training import TrainConfig, train


@dataclasses.dataclass(frozen=True)
class Cfg:
    hidden: int = 8
    n_steps: int = 40


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def test_round_trip(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=model, step=3,
                           history={"loss": [1.0, 0.5]})
    ckpt = load_checkpoint(path, name="toy", config=Cfg())
    other = make_model()
    for p in other.parameters():
        torch.nn.init.zeros_(p)
    other.load_state_dict(ckpt["model_state"])
    for a, b in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)
    assert ckpt["step"] == 3 and ckpt["history"]["loss"] == [1.0, 0.5] and ckpt["config"] == {"hidden": 8, "n_steps": 40}
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_missing_file_error_names_path_and_hint(tmp_path):
    with pytest.raises(CheckpointError, match=r"not found: .*nope\.pt\nrun this"):
        load_checkpoint(tmp_path / "nope.pt", hint="run this")


def test_corrupt_file_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_and_wrong_recipe(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a tutorial_lib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    with pytest.raises(CheckpointError, match="made by recipe 'toy', expected 'other'"):
        load_checkpoint(path, name="other")


def test_config_mismatch_names_the_field(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(hidden=8), model=make_model())
    with pytest.raises(CheckpointError, match="hidden: checkpoint has 8, expected 16"):
        load_checkpoint(path, config=Cfg(hidden=16))
    load_checkpoint(path, config=Cfg(hidden=8, n_steps=99), ignore=("n_steps",))


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model(), step=1)

    def broken_save(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, name="toy", config=Cfg(), model=make_model(), step=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def _fit(n_steps, path, interrupt_at=None):
    target = torch.tensor([[1.0, -1.0]])
    calls = {"n": 0}

    def sample(batch_size, g):
        calls["n"] += 1
        if interrupt_at is not None and calls["n"] > interrupt_at:
            raise KeyboardInterrupt
        return torch.randn(batch_size, 2, generator=g)

    loss = lambda m, x, g: ((m(x) - target - 0.1 * torch.randn(x.shape, generator=g)) ** 2).mean()
    cfg = TrainConfig(n_steps=n_steps, batch_size=16, lr=1e-2, log_every=5, checkpoint_every=1000)
    return train(make_model(), loss, sample, cfg, name="toy", recipe_config=Cfg(n_steps=n_steps),
                 checkpoint_path=path, device="cpu", progress=False)


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    straight = _fit(40, tmp_path / "a.pt")
    with pytest.raises(KeyboardInterrupt):
        _fit(40, tmp_path / "b.pt", interrupt_at=17)
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 17
    resumed = _fit(40, tmp_path / "b.pt")
    assert resumed.resumed_from == 17 and resumed.step == 40
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(straight.ema_model.parameters(), resumed.ema_model.parameters()):
        torch.testing.assert_close(a, b)
    assert straight.history["loss"] == pytest.approx(resumed.history["loss"])
    assert straight.history["loss"][-1] < straight.history["loss"][0]


def test_training_extends_a_finished_run(tmp_path):
    _fit(20, tmp_path / "c.pt")
    more = _fit(30, tmp_path / "c.pt")
    assert more.resumed_from == 20 and more.step == 30 and more.history["step"][-1] == 30


def test_cosine_learning_rate_schedule_and_bad_schedule_name():
    with pytest.raises(ValueError, match="lr_schedule must be 'constant' or 'cosine'"):
        TrainConfig(lr_schedule="linear")
    seen = []

    class Spy(torch.optim.Adam):
        def step(self, *a, **k):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*a, **k)

    cfg = TrainConfig(n_steps=10, batch_size=4, lr=1.0, lr_schedule="cosine", log_every=5)
    original = torch.optim.Adam
    torch.optim.Adam = Spy
    try:
        train(make_model(), lambda m, x, g: m(x).pow(2).mean(), lambda b, g: torch.randn(b, 2, generator=g),
              cfg, name="toy", device="cpu", progress=False)
    finally:
        torch.optim.Adam = original
    assert seen[0] == pytest.approx(1.0) and seen[5] == pytest.approx(0.5) and seen[-1] < 0.03
    assert all(a >= b for a, b in zip(seen, seen[1:]))


def test_finalize_drops_only_the_optimizer_state(tmp_path):
    from tutorial_lib.core.checkpoint import finalize_checkpoint

    _fit(20, tmp_path / "f.pt")
    before = load_checkpoint(tmp_path / "f.pt")
    size = (tmp_path / "f.pt").stat().st_size
    finalize_checkpoint(tmp_path / "f.pt")
    after = load_checkpoint(tmp_path / "f.pt")
    assert before["optimizer_state"] is not None and after["optimizer_state"] is None
    assert (tmp_path / "f.pt").stat().st_size < size
    for key in ("model_state", "ema_state"):
        for k, v in before[key].items():
            torch.testing.assert_close(after[key][k], v)
    assert after["step"] == 20 and after["history"] == before["history"]
    # a finished, finalized run loads and resumes without its optimizer (a fresh Adam continues it)
    more = _fit(25, tmp_path / "f.pt")
    assert more.resumed_from == 20 and more.step == 25
    assert not list(tmp_path.glob("*.tmp"))


class _RunsCodeOnLoad:
    """An object whose unpickling calls ``_mark_loaded``: what a checkpoint must never be able to do."""

    def __reduce__(self):
        return (_mark_loaded, ())


LOADED = []


def _mark_loaded():
    LOADED.append(True)
    return "ran"


def test_loading_runs_no_code_from_the_file(tmp_path):
    """Checkpoints load with ``weights_only=True``: a file that would run code when unpickled is refused, unrun."""
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model_state": {}, "name": "toy", "config": {}, "optimizer_state": None,
                "payload": _RunsCodeOnLoad()}, path)
    LOADED.clear()
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    from tutorial_lib.core.checkpoint import finalize_checkpoint
    with pytest.raises(Exception):
        finalize_checkpoint(path)
    assert LOADED == [], "loading a checkpoint ran code stored in it"
