"""Command line: train the book's models into ``data/``.

Command line (each reproduces one file of ``data/``)::

    python -m tutorial_lib.train recap-ddpm            # -> data/checkpoints/recap_ddpm.pt
    python -m tutorial_lib.train recap-dsm --device cuda
    python -m tutorial_lib.train --list

An interrupted run resumes from its checkpoint when the same command is run again.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from .core.assets import data_dir, update_manifest
from .core.checkpoint import finalize_checkpoint
from .core.recipes import RECIPES, get_recipe, train_recipe
from .core.utils import get_device


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--out", default=None, help="checkpoint path (default: the shipped file in data/)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    parser.add_argument("--keep-optimizer", action="store_true",
                        help="keep the optimizer state in the finished checkpoint (to train it further)")
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
    if not args.keep_optimizer:
        finalize_checkpoint(out)
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
