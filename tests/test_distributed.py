"""Data-parallel training under torchrun: two gloo processes on the CPU train like one process.

These tests start real ``torchrun`` jobs (``python -m torch.distributed.run --standalone``), as a
reader would on a multi-GPU machine, only with the gloo backend and tiny configs.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import subprocess_env
from tutorial_lib.core import distributed
from tutorial_lib.core.checkpoint import load_checkpoint
from tutorial_lib.core.recipes import get_recipe, load_recipe_model, train_recipe
from tutorial_lib.train import main as train_main, parse_overrides

# a tiny DDPM of the recap's six modes: a few ms per step, so a killed run can be caught mid-way
TINY_DDPM = ["--set", "n_train=2000", "--set", "hidden=32", "--set", "depth=2", "--set", "batch_size=64"]


def _env():
    env = subprocess_env()
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _command(recipe, out, *args, nproc=None):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc else [sys.executable])
    return [*launcher, "-m", "tutorial_lib.train", recipe, "--out", str(out), "--no-progress", "--keep-optimizer",
            "--device", "cpu", *args]


def _run(recipe, out, *args, nproc=None):
    done = subprocess.run(_command(recipe, out, *args, nproc=nproc), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"training failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _max_weight_difference(a, b):
    sa, sb = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    assert sa.keys() == sb.keys()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


# ----------------------------------------------------------------------------- splitting a batch


def test_shard_gives_each_rank_its_rows_of_every_tensor():
    batch = (torch.arange(8).view(8, 1), {"r": torch.arange(8) * 10})
    parts = [distributed.shard(batch, distributed.DistributedContext(rank, rank, 4, "gloo")) for rank in range(4)]
    assert [p[0].flatten().tolist() for p in parts] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [p[1]["r"].tolist() for p in parts] == [[0, 10], [20, 30], [40, 50], [60, 70]]
    assert distributed.shard(batch, None) is batch


def test_shard_refuses_a_batch_that_does_not_divide():
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        distributed.shard(torch.zeros(8, 2), distributed.DistributedContext(0, 0, 3, "gloo"))
    with pytest.raises(TypeError, match="cannot split a batch of type str"):
        distributed.shard("rows", distributed.DistributedContext(0, 0, 2, "gloo"))


def test_noise_seeds_differ_between_ranks_and_steps():
    seeds = {distributed.rank_noise_seed(0, rank, step) for rank in range(4) for step in range(100)}
    assert len(seeds) == 400


def test_outside_torchrun_nothing_is_initialised(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.init_from_environment("cpu") == (None, torch.device("cpu"))
    assert distributed.current() is None


# ----------------------------------------------------------------------------- the command line


def test_set_overrides_are_typed_and_checked():
    recipe = get_recipe("recap-ddpm")
    assert parse_overrides(recipe, ["n_steps=20", "lr=3e-4", "dataset=swiss_roll"]) == \
        {"n_steps": 20, "lr": 3e-4, "dataset": "swiss_roll"}
    with pytest.raises(ValueError, match="recap-ddpm has no config field 'nsteps'"):
        parse_overrides(recipe, ["nsteps=20"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(recipe, ["n_steps"])


def test_set_without_out_would_overwrite_a_shipped_file_and_is_refused(capsys):
    with pytest.raises(SystemExit):
        train_main(["recap-ddpm", "--set", "n_steps=5"])
    assert "cannot replace the shipped" in capsys.readouterr().err


def test_bf16_autocast_trains_and_fp16_needs_cuda(tmp_path):
    cfg = get_recipe("recap-ddpm").config(n_train=2000, hidden=32, depth=2, batch_size=64, n_steps=200)
    result = train_recipe("recap-ddpm", config=cfg, device="cpu", progress=False, precision="bf16")
    losses = result.history["loss"]
    assert all(map(lambda v: v == v, losses)) and losses[-1] < 0.8 * losses[0]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    with pytest.raises(ValueError, match="fp16.*needs a CUDA device"):
        train_recipe("recap-ddpm", config=cfg, device="cpu", progress=False, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        train_recipe("recap-ddpm", config=cfg, device="cpu", progress=False, precision="fp8")


# ----------------------------------------------------------------------------- two processes


def test_two_processes_take_the_same_steps_as_one(tmp_path):
    """Behaviour cloning draws no noise in its loss: the two ranks' halves of each global batch
    average to the one-process gradient, so the weights agree to float rounding (measured: 2e-7)."""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run("motivation-bc", one, "--set", "n_steps=100")
    printed = _run("motivation-bc", two, "--set", "n_steps=100", nproc=2)
    assert "2 processes (gloo)" in printed
    assert _max_weight_difference(one, two) < 1e-5
    history = load_checkpoint(two)["history"]
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    model, ckpt, cfg = load_recipe_model("motivation-bc", path=two)  # the ordinary loader reads it
    assert ckpt["step"] == 100 and not model.training


def test_two_process_diffusion_learns_like_one_process(tmp_path):
    """The diffusion loss draws its own noise on each rank, so the runs differ draw by draw; their
    losses over the last 200 of 600 steps agree within 10 % (measured: 0.290 vs 0.285, a 1.8 % gap)."""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run("recap-ddpm", one, *TINY_DDPM, "--set", "n_steps=600")
    _run("recap-ddpm", two, *TINY_DDPM, "--set", "n_steps=600", nproc=2)
    h1, h2 = load_checkpoint(one)["history"], load_checkpoint(two)["history"]
    late1, late2 = (sum(h["loss"][-4:]) / 4 for h in (h1, h2))
    assert h2["loss"][-1] < 0.7 * h2["loss"][0], "the two-process run did not learn"
    assert abs(late2 - late1) < 0.10 * late1, f"one process {late1:.4f}, two {late2:.4f}"


def test_a_killed_two_process_run_resumes_where_it_stopped(tmp_path):
    """Kill both ranks after a checkpoint, run the command again: the result equals a run that
    was never interrupted (the batch generator is in the checkpoint, the noise is seeded per step)."""
    n_steps, every = 600, 25
    args = [*TINY_DDPM, "--set", f"n_steps={n_steps}", "--checkpoint-every", str(every)]
    whole, killed = tmp_path / "whole.pt", tmp_path / "killed.pt"
    _run("recap-ddpm", whole, *args, nproc=2)

    job = subprocess.Popen(_command("recap-ddpm", killed, *args, nproc=2), env=_env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not killed.exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    stopped_at = load_checkpoint(killed)["step"]
    assert every <= stopped_at < n_steps, f"the kill came at step {stopped_at}, not mid-run"
    print(f"killed at step {stopped_at} of {n_steps}")

    _run("recap-ddpm", killed, *args, nproc=2)
    resumed = load_checkpoint(killed)
    assert resumed["step"] == n_steps
    assert resumed["history"]["loss"] == pytest.approx(load_checkpoint(whole)["history"]["loss"], rel=1e-6)
    assert _max_weight_difference(whole, killed) < 1e-6


_PROBE = r'''
"""Run under torchrun: each rank records the rows its loss sees, one draw of the batch generator
and one of the noise generator per step, its logged losses and its own weights."""
import json
import sys

import torch

from tutorial_lib.core import distributed
from tutorial_lib.core.training import TrainConfig, train

ctx, device = distributed.init_from_environment("cpu")
rank = 0 if ctx is None else ctx.rank
seen, batch_draws, noise_draws = [], [], []


def sample_batch(b, g):
    batch_draws.append(torch.rand(1, generator=g).item())
    return torch.arange(b, dtype=torch.float32)[:, None] + 1.0


def loss(model, x, g):
    seen.append(x[:, 0].tolist())
    noise_draws.append(torch.rand(1, generator=g).item())
    target = torch.where(x <= 4, 3.0 * x, -3.0 * x)     # the two halves pull the weight opposite ways
    return ((model(x) - target) ** 2).mean()


torch.manual_seed(0)
config = TrainConfig(n_steps=3, batch_size=int(sys.argv[2]), lr=0.05, log_every=1, grad_clip=None, ema_decay=0.0)
run = train(torch.nn.Linear(1, 1), loss, sample_batch, config, name="probe", device=device, progress=False,
            checkpoint_path=f"{sys.argv[1]}.pt")
out = {"rank": rank, "seen": seen, "batch_draws": batch_draws, "noise_draws": noise_draws,
       "loss": run.history["loss"], "weights": [v for p in run.model.parameters() for v in p.detach().flatten().tolist()]}
with open(f"{sys.argv[1]}.{rank}.json", "w") as f:
    json.dump(out, f)
distributed.destroy()
'''


def _probe(tmp_path, stem, nproc=None, batch_size=8):
    """Run the probe under torchrun with ``nproc`` ranks, or with ``nproc=None`` as one process in this
    interpreter (so that `make mutate` maps the calling test to `train`). Returns the torchrun result."""
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    args = [str(probe), str(tmp_path / stem), str(batch_size)]
    if nproc is None:
        argv = sys.argv
        try:
            sys.argv = args
            runpy.run_path(str(probe), run_name="__main__")
        finally:
            sys.argv = argv
        return None
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run([*launcher, *args], env=_env(), capture_output=True, text=True, timeout=300)


def test_each_rank_trains_on_its_half_of_the_batch_and_the_ranks_average_their_gradients(tmp_path):
    """Two ranks that trained independently on the whole batch would pass the tests above (same
    batches, same steps); this one tells them apart. Each rank's loss must see only its half of
    the global batch of 8 rows; the ranks' weights must agree after three steps with the weights
    of one process on the whole batch, which holds only if the gradients are averaged; the logged
    loss is the mean over both halves; the batch generator is shared, the noise each rank's own;
    the checkpoint is written (which rank writes it is not visible on one machine); and a global
    batch that does not split over the ranks is refused."""
    import json

    _probe(tmp_path, "one")
    done = _probe(tmp_path, "two", 2)
    assert done.returncode == 0, f"the probe failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    one = json.loads((tmp_path / "one.0.json").read_text())
    ranks = [json.loads((tmp_path / f"two.{r}.json").read_text()) for r in (0, 1)]
    assert one["seen"] == [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]] * 3
    assert ranks[0]["seen"] == [[1.0, 2.0, 3.0, 4.0]] * 3, "rank 0 must see rows 0-3 of each global batch"
    assert ranks[1]["seen"] == [[5.0, 6.0, 7.0, 8.0]] * 3, "rank 1 must see rows 4-7 of each global batch"
    for r in ranks:
        assert r["weights"] == pytest.approx(one["weights"], abs=1e-6), \
            f"rank {r['rank']}'s weights differ from one process's: the gradients were not averaged"
    assert ranks[0]["loss"] == pytest.approx(one["loss"], rel=1e-5), "the logged loss is not the mean over ranks"
    assert ranks[0]["batch_draws"] == ranks[1]["batch_draws"], "the ranks must draw the same global batches"
    assert all(a != b for a, b in zip(ranks[0]["noise_draws"], ranks[1]["noise_draws"])), \
        "the ranks must draw their own noise"
    assert load_checkpoint(tmp_path / "two.pt")["step"] == 3

    # a global batch that does not split over the ranks is refused (here, not in a test of its own,
    # because only a test that calls `train` in its own interpreter is run against train's mutants)
    done = _probe(tmp_path, "odd", nproc=2, batch_size=7)
    assert done.returncode != 0
    assert "probe: batch_size 7 does not split evenly over 2 processes; choose a multiple of 2" in done.stderr
