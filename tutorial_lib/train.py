"""Train the book's models, and load the shipped checkpoints.

Command line (each reproduces one file of ``data/``)::

    python -m tutorial_lib.train recap-ddpm            # -> data/checkpoints/recap_ddpm.pt
    python -m tutorial_lib.train recap-dsm --device cuda
    python -m tutorial_lib.train --list

An interrupted run resumes from its checkpoint when the same command is run again.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from .assets import data_dir, update_manifest, verify_file
from .checkpoint import load_checkpoint
from .recipes import RECIPES, get_recipe
from .training import TrainResult, train
from .utils import get_device

__all__ = ["train_recipe", "load_pretrained"]


def train_recipe(name: str, config=None, checkpoint_path: str | os.PathLike | None = None,
                 device=None, progress: bool = True) -> TrainResult:
    """Train recipe ``name`` (with its default config unless ``config`` is given).

    With ``checkpoint_path`` the run saves as it goes and resumes from an existing file.
    """
    recipe = get_recipe(name)
    cfg = config if config is not None else recipe.make_config()
    if not isinstance(cfg, recipe.config_cls):
        raise TypeError(f"{name} takes a {recipe.config_cls.__name__}, got {type(cfg).__name__}")
    device = get_device(device)
    torch.manual_seed(cfg.seed)  # network initialisation
    model = recipe.build_model(cfg)
    data = recipe.training_data(cfg)
    if recipe.make_batches is not None:
        sample_batch = recipe.make_batches(cfg, data, device)
    else:
        data = data.to(device)

        def sample_batch(batch_size, generator):
            idx = torch.randint(0, len(data), (batch_size,), generator=generator, device=generator.device)
            return data[idx]

    extra = recipe.extra(cfg, data) if recipe.extra is not None else None
    return train(model, recipe.make_loss(cfg, device), sample_batch, recipe.train_config(cfg), name=name,
                 recipe_config=cfg, checkpoint_path=checkpoint_path, device=device, progress=progress,
                 hint=f"re-create it with: {recipe.command()}", extra=extra)


def load_pretrained(name: str, device=None, ema: bool = True):
    """Load the shipped checkpoint of recipe ``name``; returns ``(model, checkpoint dict)``.

    The model is built from the config stored in the checkpoint, loaded with the EMA weights
    (``ema=True``) or the raw ones, put in eval mode and moved to ``device``.
    """
    recipe = get_recipe(name)
    path = verify_file(recipe.default_path())
    ckpt = load_checkpoint(path, name=name, hint=f"re-create it with: {recipe.command()}")
    cfg = recipe.config_cls(**ckpt["config"])
    model = recipe.build_model(cfg)
    model.load_state_dict(ckpt["ema_state"] if ema and ckpt["ema_state"] is not None else ckpt["model_state"])
    return model.to(get_device(device)).eval(), ckpt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--out", default=None, help="checkpoint path (default: the shipped file in data/)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    args = parser.parse_args(argv)
    if args.list or not args.recipe:
        for name, r in RECIPES.items():
            print(f"{name:20s} {r.description}  ->  data/{r.default_path()}")
        return 0
    recipe = get_recipe(args.recipe)
    default = data_dir() / recipe.default_path()
    out = Path(args.out) if args.out else default
    if args.fresh and out.exists():
        out.unlink()
    device = get_device(args.device)
    result = train_recipe(args.recipe, checkpoint_path=out, device=device)
    seconds = result.history["wall_time"][-1]
    print(f"{args.recipe}: {result.step} steps, final loss {result.history['loss'][-1]:.4f}, "
          f"{seconds:.0f} s on {device.type} -> {out}")
    if out.resolve() == default.resolve():
        where = (torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"{platform.machine()} cpu, {torch.get_num_threads()} threads")
        update_manifest(recipe.default_path(), recipe.command(), train_seconds=round(seconds, 1),
                        train_device=where, steps=result.step, torch=torch.__version__.split("+")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
