"""The book's training recipes: short runs learn, and the CLI resumes."""

import dataclasses

import torch

from tutorial_lib.diffusion.toy_models import RecapDDPMConfig, RecapDSMConfig
from tutorial_lib.core.recipes import get_recipe
from tutorial_lib.diffusion.toy_data import six_mode_mixture
from tutorial_lib.train import main as train_main
from tutorial_lib.core.recipes import train_recipe


def test_ddpm_recipe_learns():
    cfg = dataclasses.replace(RecapDDPMConfig(), n_steps=150, hidden=32, depth=1, batch_size=128, n_train=2000)
    result = train_recipe("recap-ddpm", cfg, device="cpu", progress=False)
    loss = result.history["loss"]
    assert loss[-1] < 0.8 * loss[0]


def test_dsm_recipe_learns_the_score():
    # the DSM loss has a large irreducible part, so grade the score itself against the exact one
    cfg = dataclasses.replace(RecapDSMConfig(), n_steps=300, hidden=64, depth=2, batch_size=256, n_train=5000)
    untrained = get_recipe("recap-dsm").build_model(cfg)
    result = train_recipe("recap-dsm", cfg, device="cpu", progress=False)
    noised = six_mode_mixture().noised(1.0)
    x = noised.sample(2000, torch.Generator().manual_seed(0))
    true = noised.score(x)

    def rel_error(model):
        with torch.no_grad():
            return (((model(x, 1.0) - true) ** 2).sum(-1).mean() / (true ** 2).sum(-1).mean()).item()

    assert rel_error(result.model) < 0.3 < rel_error(untrained)


def test_recipe_rejects_a_config_of_another_recipe():
    try:
        train_recipe("recap-ddpm", RecapDSMConfig(n_steps=1))
    except TypeError as exc:
        assert "recap-ddpm takes a RecapDDPMConfig, got RecapDSMConfig" in str(exc)
    else:
        raise AssertionError("expected a TypeError")


def test_cli_lists_recipes(capsys):
    assert train_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "recap-ddpm" in out and "recap-dsm" in out
