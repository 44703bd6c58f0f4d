"""Command line: train the book's models into ``data/``.

Command line (each reproduces one file of ``data/``)::

    python -m tutorial_lib.train recap-ddpm            # -> data/checkpoints/recap_ddpm.pt
    python -m tutorial_lib.train recap-dsm --device cuda
    python -m tutorial_lib.train --list

An interrupted run resumes from its checkpoint when the same command is run again.

On a GPU, ``--precision bf16`` (or ``fp16``, with loss scaling) runs the forward passes under
autocast. A bigger run than the shipped one changes the recipe's config and must go to its own
file, e.g. Diffuser's published 2M steps::

    python -m tutorial_lib.train maze-umaze-diffuser --set n_steps=2000000 --out runs/umaze_2m.pt

Several processes, data-parallel (``DistributedDataParallel``: NCCL on GPUs, gloo on CPUs); the
global batch stays the recipe's ``batch_size``, split evenly over the processes, and rank 0 writes
the checkpoint::

    torchrun --nproc_per_node=4 -m tutorial_lib.train pusht-diffusion-policy --out runs/dp.pt
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        -m tutorial_lib.train maze-medium-diffuser --out /shared/runs/medium.pt

(with several machines, ``--out`` must be on a file system they all see, so that a resumed run finds it).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import platform
import sys
from pathlib import Path

import torch

from .core import distributed
from .core.assets import data_dir, update_manifest
from .core.checkpoint import finalize_checkpoint
from .core.recipes import RECIPES, get_recipe, train_recipe
from .core.training import PRECISIONS
from .core.utils import get_device


def parse_overrides(recipe, items: list[str]) -> dict:
    """``["n_steps=2000", "lr=3e-4"]`` -> ``{"n_steps": 2000, "lr": 0.0003}``, checked against the config."""
    fields = {f.name: f for f in dataclasses.fields(recipe.config_cls)}
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        if key not in fields:
            raise ValueError(f"{recipe.name} has no config field {key!r}; fields: {sorted(fields)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word, e.g. layout=medium
        overrides[key] = value
    return overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--out", default=None, help="checkpoint path (default: the shipped file in data/)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    parser.add_argument("--keep-optimizer", action="store_true",
                        help="keep the optimizer state in the finished checkpoint (to train it further)")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS),
                        help="fp32 (default); bf16 autocast (CPU or GPU); fp16 autocast with loss scaling (GPU)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a config field (needs --out: the shipped files keep the shipped configs)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                        help="steps between checkpoints (default: 2000, or n_steps if fewer)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.list or not args.recipe:
        for name, r in RECIPES.items():
            print(f"{name:20s} {r.description}  ->  data/{r.default_path()}")
        return 0
    recipe = get_recipe(args.recipe)
    overrides = parse_overrides(recipe, args.overrides)
    default = data_dir() / recipe.default_path()
    out = Path(args.out) if args.out else default
    if overrides and out.resolve() == default.resolve():
        parser.error(f"--set changes the recipe, so its checkpoint cannot replace the shipped data/{recipe.default_path()}; "
                     "give --out PATH")
    ctx, device = distributed.init_from_environment(args.device)
    device = device if ctx is not None else get_device(args.device)
    main_process = ctx is None or ctx.is_main
    try:
        if args.fresh and out.exists() and main_process:
            out.unlink()
        if ctx is not None:
            torch.distributed.barrier()
        result = train_recipe(args.recipe, config=recipe.config(**overrides), checkpoint_path=out, device=device,
                              progress=not args.no_progress, precision=args.precision,
                              checkpoint_every=args.checkpoint_every)
        if ctx is not None:
            torch.distributed.barrier()  # rank 0 has written the last checkpoint
    finally:
        distributed.destroy()
    if not main_process:
        return 0
    seconds = result.history["wall_time"][-1]
    if not args.keep_optimizer:
        finalize_checkpoint(out)
    world = f", {ctx.world_size} processes ({ctx.backend})" if ctx is not None else ""
    print(f"{args.recipe}: {result.step} steps, final loss {result.history['loss'][-1]:.4f}, "
          f"{seconds:.0f} s on {device.type}{world} -> {out}")
    if out.resolve() == default.resolve():
        where = (torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"{platform.machine()} cpu, {torch.get_num_threads()} threads")
        info = dict(train_seconds=round(seconds, 1), train_device=where, steps=result.step,
                    torch=torch.__version__.split("+")[0])
        if ctx is not None:
            info.update(world_size=ctx.world_size, backend=ctx.backend)
        if args.precision != "fp32":
            info.update(precision=args.precision)
        update_manifest(recipe.default_path(), recipe.command(), **info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
