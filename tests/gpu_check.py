"""The book's GPU check: every recipe trained briefly on CUDA, timed, and its loss compared.

Not part of ``make test`` (CI has no GPU). Run it on a machine with one GPU, from the repository
root, when one is available::

    python tests/gpu_check.py --out gpu_check.json                 # all recipes, ~6 min on an H100
    python tests/gpu_check.py --recipes recap-ddpm pusht-bc --steps 300
    python tests/gpu_check.py --notebooks book/recap/ddpm_ddim.ipynb book/motivation/multimodal_imitation.ipynb
    python tests/gpu_check.py --device cpu --steps 20 --cpu-steps 5 --recipes recap-ddpm   # a dry run

For each recipe it

1. trains ``--steps`` steps on the GPU in fp32 and in bf16 autocast, from the recipe's own seed,
   and compares the mean loss of the last logged window with the loss the shipped checkpoint
   logged at the same step (it was trained on a CPU): the two runs draw different noise, so the
   check is a tolerance (``--loss-tolerance``, relative), not equality;
2. times the steps per second on the GPU (after a warm-up) and on one CPU thread (``--cpu-steps``);
3. projects the time of a full retraining (the recipe's ``n_steps``) on this GPU, to compare with
   the book's target of 10 minutes per shipped model on one H100-class GPU.

``--torchrun`` also trains one recipe with ``torchrun --nproc_per_node=<GPUs>`` (NCCL) through
the ordinary command line. ``--notebooks`` executes notebooks end to end with ``RETRAIN = True``
(their ``expect`` checks then test the retrained models), which needs ``nbclient`` and
``ipykernel``. The results are printed as a Markdown table and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tutorial_lib.core.assets import data_dir, read_manifest  # noqa: E402
from tutorial_lib.core.checkpoint import load_checkpoint  # noqa: E402
from tutorial_lib.core.recipes import RECIPES, get_recipe, train_recipe  # noqa: E402


def shipped_loss_at(name: str, step: int) -> float | None:
    """The loss the shipped checkpoint logged at ``step`` (the window ending there), if it logged one."""
    path = data_dir() / get_recipe(name).default_path()
    if not path.is_file():
        return None
    history = load_checkpoint(path)["history"]
    return dict(zip(history["step"], history["loss"])).get(step)


def steps_per_second(name: str, cfg, device: str, n_steps: int, precision: str = "fp32") -> float:
    """Optimisation steps per second of recipe ``name`` on ``device`` (the first 10 % are a warm-up)."""
    warm = max(2, n_steps // 10)
    train_recipe(name, config=dataclasses.replace(cfg, n_steps=warm), device=device, progress=False,
                 precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_recipe(name, config=dataclasses.replace(cfg, n_steps=n_steps), device=device,
                 progress=False, precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n_steps / (time.perf_counter() - t0)


def check_recipe(name: str, args) -> dict:
    recipe = get_recipe(name)
    cfg = recipe.config()
    row: dict = {"recipe": name, "n_steps": cfg.n_steps, "batch_size": cfg.batch_size}
    log_every = 50
    steps = max(log_every, args.steps // log_every * log_every)
    short = recipe.config(n_steps=steps)
    reference = shipped_loss_at(name, steps)
    for precision in ("fp32", "bf16"):
        t0 = time.perf_counter()
        result = train_recipe(name, config=short, device=args.device, progress=False, precision=precision)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        loss = result.history["loss"][-1]
        row[precision] = {"loss": round(loss, 5), "seconds": round(seconds, 2),
                          "steps_per_s": round(steps / seconds, 1)}
        if reference is not None:
            gap = abs(loss - reference) / reference
            row[precision]["loss_vs_shipped"] = round(gap, 3)
            row[precision]["loss_ok"] = bool(gap <= args.loss_tolerance)
    row["shipped_loss"] = reference
    row["steps"] = steps
    # the fp32 run above includes start-up (data to the device, kernels compiled): time steadily
    row["gpu_steps_per_s"] = round(steps_per_second(name, short, args.device, steps), 1)
    torch.set_num_threads(1)
    row["cpu_steps_per_s"] = round(steps_per_second(name, short, "cpu", args.cpu_steps), 2)
    torch.set_num_threads(args.threads)
    row["full_retrain_gpu_min"] = round(cfg.n_steps / row["gpu_steps_per_s"] / 60, 1)
    row["full_retrain_cpu_min"] = round(cfg.n_steps / row["cpu_steps_per_s"] / 60, 1)
    row["speedup"] = round(row["gpu_steps_per_s"] / row["cpu_steps_per_s"], 1)
    entry = read_manifest().get(recipe.default_path(), {})
    row["shipped_train_seconds"] = entry.get("train_seconds")
    return row


def run_torchrun(name: str, args) -> dict:
    n = max(1, torch.cuda.device_count()) if args.device.startswith("cuda") else 2
    out = Path(args.scratch) / f"torchrun_{name}.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "tutorial_lib.train", name, "--set", f"n_steps={args.steps}", "--out", str(out),
               "--no-progress", "--fresh"]
    if not args.device.startswith("cuda"):
        command += ["--device", "cpu"]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    return {"recipe": name, "processes": n, "returncode": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "output": (done.stdout + done.stderr)[-1500:]}


def run_notebook(path: str, args) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / path, as_version=4)
    switched = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "RETRAIN = False" in cell.source:
            cell.source = cell.source.replace("RETRAIN = False", "RETRAIN = True")
            switched += 1
    folder = (REPO / path).parent
    before = set(folder.iterdir())
    t0 = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    except Exception as exc:  # the failing cell's error, reported in the table
        error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
    for made in set(folder.iterdir()) - before:  # the retrained checkpoints the notebook wrote
        if made.is_file():
            made.unlink()
    return {"notebook": path, "retrain_switches": switched, "seconds": round(time.perf_counter() - t0, 1),
            "ok": error is None, "error": error}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| recipe | steps/s GPU | steps/s CPU (1 thread) | speed-up | full retrain on GPU (min) | "
             "loss fp32 / bf16 vs shipped |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['recipe']} | error: {r['error'][:80]} | | | | |")
            continue
        gaps = " / ".join(str(r[p].get("loss_vs_shipped", "n/a")) for p in ("fp32", "bf16"))
        lines.append(f"| {r['recipe']} | {r['gpu_steps_per_s']} | {r['cpu_steps_per_s']} | {r['speedup']}x | "
                     f"{r['full_retrain_gpu_min']} | {gaps} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=None, help="default: every recipe")
    parser.add_argument("--steps", type=int, default=500, help="GPU steps per recipe and precision")
    parser.add_argument("--cpu-steps", type=int, default=20, help="CPU steps timed per recipe")
    parser.add_argument("--loss-tolerance", type=float, default=0.25, help="relative gap to the shipped loss")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for data work")
    parser.add_argument("--torchrun", default="recap-ddpm", help="recipe for the torchrun check ('' to skip)")
    parser.add_argument("--notebooks", nargs="*", default=[])
    parser.add_argument("--scratch", default="/tmp/gpu_check")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; pass --device cpu for a dry run")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                    "torch": torch.__version__, "steps": args.steps, "recipes": [], "torchrun": None, "notebooks": []}

    def save():
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

    for name in args.recipes or list(RECIPES):
        t0 = time.perf_counter()
        try:
            row = check_recipe(name, args)
        except Exception as exc:  # a missing package (pymunk, ...) or a failure: reported, the rest go on
            row = {"recipe": name, "error": f"{type(exc).__name__}: {exc}"}
        row["check_seconds"] = round(time.perf_counter() - t0, 1)
        report["recipes"].append(row)
        print(json.dumps(row), flush=True)
        save()
    if args.torchrun:
        report["torchrun"] = run_torchrun(args.torchrun, args)
        print(json.dumps(report["torchrun"]), flush=True)
        save()
    for path in args.notebooks:
        report["notebooks"].append(run_notebook(path, args))
        print(json.dumps(report["notebooks"][-1]), flush=True)
        save()
    print(markdown_table(report["recipes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
