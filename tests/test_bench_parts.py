"""The benchmarks of Part 4 (literature) and Part 5 (limitations): a quick run prints progress and one
JSON object with the keys the issue names (the full runs are stored in data/bench/)."""

import functools
import json
import subprocess
import sys


@functools.lru_cache(maxsize=None)
def quick(suite: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tutorial_lib.bench", suite, "--quick"],
                         capture_output=True, text=True, check=True, timeout=900).stdout
    lines = out.strip().splitlines()
    assert any(line.startswith("[bench]") for line in lines[:-1]), "progress lines expected before the JSON"
    result = json.loads(lines[-1])
    assert result["suite"] == suite and result["quick"] is True
    return result


def test_literature_bench_quick():
    result = quick("literature")
    mb = result["model_based"]
    for key in ("mbd_success", "mbd_cost", "mppi_success", "mppi_cost", "rollouts"):
        assert key in mb, key
    assert 0 <= mb["mbd_success"] <= 1 and mb["rollouts"] > 0
    hy = result["hybrid"]
    for key in ("optimizer_ms", "optimizer_success", "diffusion_ms", "diffusion_success", "warm_start_ms",
                "warm_start_success"):
        assert key in hy, key
    assert hy["optimizer_ms"] > 0 and "ci95" in hy and "ci95" in mb
    wtd = result["what_to_diffuse"]
    for name in ("state_action", "state_inverse_dynamics", "action"):
        for key in ("success", "normalized_score", "decision_ms", "step_ms", "ci95", "n_episodes"):
            assert key in wtd[name], (name, key)
        # each shipped agent reaches the goal of the two quick pairs (the full bench: 100 pairs);
        # a broken model (wrong units, unconditioned, untrained) does not
        assert wtd[name]["success"] >= 0.5 and wtd[name]["decision_ms"] > 0, (name, wtd[name])


def test_limitations_bench_quick():
    result = quick("limitations")
    compute = result["compute"]
    for key in ("diffusion_policy", "few_step"):
        entry = compute["pusht"][key]
        assert {"mean_max_coverage", "ms_per_chunk", "nfe"} <= set(entry), key
    assert compute["pusht"]["diffusion_policy"]["nfe"] == 10 and compute["pusht"]["few_step"]["nfe"] <= 2
    few = compute["maze"]["few_step"]
    assert few["plan_ms"] > 0 and 0 <= few["success"] <= 1
    variance = result["variance"]
    assert 0 <= variance["single"]["failure_rate"] <= 1 and 0 <= variance["best_of_n"]["failure_rate"] <= 1
    entry = result["constraints"]["obstacles_1"]        # the quick run places one obstacle only
    assert 0 <= entry["plain"]["violation_rate"] <= 1 and entry["best"] in entry


def test_limitations_bench_quick_shift():
    result = quick("limitations")["shift"]
    for method in ("diffusion", "gaussian", "steered"):
        r = result[method]
        assert r["n_seeds"] == 1 and r["budget"] == 400 and len(r["curve_episodes"]) == 9, method
        # neither pre-trained policy reaches the moved goal: what there is to adapt to
        assert r["initial_success"] == 0.0, method
        assert {"episodes_to_90", "seconds_to_90", "grad_steps_to_90", "final_success"} <= set(r), method
