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


def test_a_dict_config_may_grow_its_n_steps_on_resume_but_nothing_else(tmp_path):
    """A recipe config given as a plain dict: resuming allows a longer run (``n_steps``) and names any other change."""
    def fit(recipe_config, n_steps):
        cfg = TrainConfig(n_steps=n_steps, batch_size=4, lr=1e-2, log_every=5)
        return train(make_model(), lambda m, x, g: m(x).pow(2).mean(), lambda b, g: torch.randn(b, 2, generator=g),
                     cfg, name="toy", recipe_config=recipe_config, checkpoint_path=tmp_path / "d.pt", device="cpu",
                     progress=False)

    fit({"hidden": 8, "n_steps": 10}, 10)
    more = fit({"hidden": 8, "n_steps": 15}, 15)
    assert more.resumed_from == 10 and more.step == 15
    with pytest.raises(CheckpointError, match="hidden: checkpoint has 8, expected 16"):
        fit({"hidden": 16, "n_steps": 20}, 20)


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


# ----------------------------------------------------------------------------- edges (from mutation testing)
def test_config_to_dict_takes_dataclass_instances_and_dicts_only():
    from tutorial_lib.core.checkpoint import config_to_dict

    assert config_to_dict(Cfg(hidden=3)) == {"hidden": 3, "n_steps": 40}
    plain = {"a": 1}
    assert config_to_dict(plain) == plain and config_to_dict(plain) is not plain     # a copy
    for bad, kind in ((Cfg, "type"), (None, "NoneType"), ([1], "list")):
        with pytest.raises(TypeError, match=f"config must be a dataclass instance or a dict, got {kind}$"):
            config_to_dict(bad)


def test_check_config_message_lists_every_difference_and_missing_fields():
    from tutorial_lib.core.checkpoint import check_config

    with pytest.raises(CheckpointError) as err:
        check_config({"a": 1, "b": 2, "old": None}, {"a": 1, "b": 3, "new": None})
    assert str(err.value) == ("checkpoint was made with a different config:\n"
                              "  b: checkpoint has 2, expected 3\n"
                              "  new: checkpoint has '<missing>', expected None\n"
                              "  old: checkpoint has None, expected '<missing>'\n"
                              "retrain it, or build the model with the checkpoint's config")
    check_config({"a": 1, "b": 2}, {"a": 1, "b": 5, "c": 0}, ignore=("b", "c"))     # ignored fields may differ


def test_load_errors_end_with_the_hint_only_when_given(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(err.value) == f"checkpoint not found: {tmp_path / 'nope.pt'}"


def test_saved_layout_defaults_and_nested_folders(tmp_path):
    import tutorial_lib

    path = save_checkpoint(tmp_path / "a" / "b" / "m.pt", name="toy", config=Cfg(), model=make_model())
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 0 and ckpt["library_version"] == tutorial_lib.__version__ and ckpt["format_version"] == 1
    assert ckpt["ema_state"] is None and ckpt["optimizer_state"] is None and ckpt["rng_state"] is None
    assert ckpt["history"] == {} and ckpt["extra"] == {}


def test_atomic_save_writes_a_readable_temporary_file_next_to_the_target(tmp_path, monkeypatch):
    """The temporary file is ``<name>.<random>.tmp`` in the target's folder (a rename across file systems is not
    atomic), and the result is readable by everyone (0o644, not mkstemp's 0o600)."""
    import os

    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    monkeypatch.undo()
    (src, dst), = renames
    src = __import__("pathlib").Path(src)
    assert dst == os.fspath(path) and src.parent == path.parent
    assert src.name.startswith("m.pt.") and src.name.endswith(".tmp") and len(src.name) > len("m.pt..tmp")
    assert path.stat().st_mode & 0o777 == 0o644


def _spy_on_torch_load(monkeypatch) -> list:
    """Record the keyword arguments of every ``torch.load`` call (the load itself still happens)."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_finalize_loads_weights_only_onto_the_cpu(tmp_path, monkeypatch):
    """``weights_only=True`` is asked for explicitly (it is torch's default only since 2.6; requirements.txt allows
    older torch), and ``map_location="cpu"`` lets a file holding GPU tensors be finalized on a CPU-only machine."""
    from tutorial_lib.core.checkpoint import finalize_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model(),
                           optimizer=torch.optim.SGD(make_model().parameters(), lr=0.1))
    calls = _spy_on_torch_load(monkeypatch)
    finalize_checkpoint(path)
    monkeypatch.undo()
    assert calls and calls[0].get("weights_only") is True and calls[0].get("map_location") == "cpu"
    assert load_checkpoint(path)["optimizer_state"] is None


def test_load_puts_the_tensors_where_map_location_says(tmp_path):
    """``map_location`` reaches ``torch.load`` ("meta" stands in for a GPU)."""
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    ckpt = load_checkpoint(path, map_location="meta")
    assert {v.device.type for v in ckpt["model_state"].values()} == {"meta"}
    assert {v.device.type for v in load_checkpoint(path)["model_state"].values()} == {"cpu"}


def test_load_asks_for_weights_only_and_names_the_exception_type(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    calls = _spy_on_torch_load(monkeypatch)
    load_checkpoint(path)
    monkeypatch.undo()
    assert calls[0].get("weights_only") is True        # explicit: torch's default only since 2.6
    path.write_bytes(b"hello")
    try:
        torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        kind = type(exc).__name__
    with pytest.raises(CheckpointError, match=rf"\(truncated or corrupt\?\): {kind}: "):
        load_checkpoint(path)


def test_every_load_error_names_the_file_the_problem_and_the_hint(tmp_path):
    """The full message of each failure, with the hint on its own last line."""
    hint = "make checkpoints"

    def message(path, **kw):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path, hint=hint, **kw)
        return str(err.value)

    assert message(tmp_path / "nope.pt") == f"checkpoint not found: {tmp_path / 'nope.pt'}\n{hint}"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02" + b"x" * 50)
    try:
        torch.load(bad, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        text = f"{type(exc).__name__}: {str(exc)[:200]}"
    assert message(bad) == f"checkpoint {bad} is not a readable checkpoint (truncated or corrupt?): {text}\n{hint}"
    for i, obj in enumerate(({"format_version": 1}, {"model_state": {}}, [1, 2])):
        torch.save(obj, tmp_path / f"f{i}.pt")
        assert message(tmp_path / f"f{i}.pt") == (f"{tmp_path / f'f{i}.pt'} is a torch file but not a tutorial_lib "
                                                 f"checkpoint (no format_version/model_state keys)\n{hint}")
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())
    assert message(path, name="other") == f"checkpoint {path} was made by recipe 'toy', expected 'other'\n{hint}"
    assert message(path, config=Cfg(hidden=3)).startswith(f"checkpoint {path} was made with a different config:\n"
                                                          "  hidden: checkpoint has 8, expected 3\n")
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = 2
    torch.save(ckpt, path)
    assert message(path) == f"checkpoint {path} has format version 2, this library reads version 1\n{hint}"


def test_unreadable_file_message_keeps_200_characters_of_the_cause(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", name="toy", config=Cfg(), model=make_model())

    def failing_load(*args, **kwargs):
        raise RuntimeError("y" * 150 + "z" * 100)

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).endswith("(truncated or corrupt?): RuntimeError: " + "y" * 150 + "z" * 50)
    assert isinstance(err.value.__cause__, RuntimeError)
