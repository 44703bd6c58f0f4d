"""The shipped files in data/: manifest integrity and the errors for missing or altered files."""

import json
import shutil

import pytest
import torch

from tutorial_lib.core import assets
from tutorial_lib.core.recipes import RECIPES, get_recipe
from tutorial_lib.core.recipes import load_pretrained


def test_every_manifest_entry_matches_its_file():
    files = assets.read_manifest()
    assert files, "data/MANIFEST.json lists no files"
    for relpath, entry in files.items():
        path = assets.data_dir() / relpath
        assert path.is_file(), f"{relpath} is in the manifest but missing"
        assert assets.sha256_of(path) == entry["sha256"], f"{relpath} does not match its sha256"
        assert path.stat().st_size == entry["bytes"]
        assert entry["command"].startswith("python -m tutorial_lib."), entry["command"]


def test_every_shipped_checkpoint_is_listed_and_loads():
    listed = set(assets.read_manifest())
    for path in (assets.data_dir() / "checkpoints").glob("*.pt"):
        assert f"checkpoints/{path.name}" in listed, f"{path.name} is not in data/MANIFEST.json"
    shipped = [n for n in RECIPES if (assets.data_dir() / get_recipe(n).default_path()).is_file()]
    assert {"recap-dsm", "recap-ddpm", "pusht-diffusion-policy", "pusht-bc"} <= set(shipped)
    for name in shipped:
        model, ckpt = load_pretrained(name, device="cpu")
        cfg = get_recipe(name).config_cls(**ckpt["config"])
        assert ckpt["step"] == cfg.n_steps, f"{name}: the shipped checkpoint is not fully trained"
        assert cfg == get_recipe(name).config(), (
            f"{name}: the shipped checkpoint was trained with another config than its recipe's, so the "
            f"manifest's command would not reproduce it")
        assert not model.training
        assert len(ckpt["history"]["loss"]) > 10


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of data/ to damage."""
    copy = tmp_path / "data"
    shutil.copytree(assets.data_dir(), copy)
    monkeypatch.setenv("TUTORIAL_LIB_DATA", str(copy))
    return copy


def test_missing_file_names_the_command(data_copy):
    (data_copy / "checkpoints" / "recap_ddpm.pt").unlink()
    with pytest.raises(FileNotFoundError, match="re-create it with: python -m tutorial_lib.train recap-ddpm"):
        load_pretrained("recap-ddpm")


def test_altered_file_is_refused(data_copy):
    path = data_copy / "checkpoints" / "recap_dsm.pt"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="does not match its sha256"):
        load_pretrained("recap-dsm")


def test_update_manifest_records_hash_and_command(data_copy):
    (data_copy / "x.bin").write_bytes(b"abc")
    entry = assets.update_manifest("x.bin", "python -m tutorial_lib.train x", train_seconds=1.0)
    assert entry["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert json.loads((data_copy / "MANIFEST.json").read_text())["files"]["x.bin"]["bytes"] == 3


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(KeyError, match="available: .*recap-ddpm"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="unknown config fields for recap-ddpm: \\['widht'\\]"):
        RECIPES["recap-ddpm"].config(widht=3)
