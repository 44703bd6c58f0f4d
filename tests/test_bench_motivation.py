"""The motivation benchmark: a quick run prints progress and one JSON object with both experiments."""

import json
import subprocess
import sys


def test_motivation_bench_quick():
    out = subprocess.run([sys.executable, "-m", "tutorial_lib.bench", "motivation", "--quick"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    lines = out.strip().splitlines()
    assert any(line.startswith("[bench]") for line in lines[:-1]), "progress lines expected before the JSON"
    result = json.loads(lines[-1])
    assert result["suite"] == "motivation" and result["quick"] is True
    mm, rl = result["multimodal"], result["offline_rl"]
    for key in ["bc_success", "diffusion_success", "bc_collision", "diffusion_collision"]:
        assert 0.0 <= mm[key] <= 1.0, key
    assert set(mm["diffusion_success_by_action_steps"]) == {"1", "4", "8"}
    for key in ["behavior_return", "naive_return", "naive_ood_rate", "conservative_return", "diffusion_return"]:
        assert isinstance(rl[key], float), key
    # even the small version shows the extrapolation problem: the regression Q's argmax leaves the data
    assert rl["naive_ood_rate"] > 0.9 and rl["behavior_ood_rate"] < 0.01
    # every rate and mean comes with its 95 % interval
    for key in ("bc_success", "diffusion_success"):
        low, high = mm["ci95"][key]
        assert low <= mm[key] <= high
    for method in ("behavior", "naive", "conservative", "diffusion"):
        assert rl["ci95"][method]["return"] >= 0 and len(rl["ci95"][method]["ood_rate"]) == 2
    for key in ("compounding", "compounding_pusht"):
        check_compounding(result[key])


def check_compounding(cp):
    n = len(cp["horizons"])
    assert n >= 3 and len(cp["autoregressive_error"]) == n and len(cp["diffusion_error"]) == n
    assert len(cp["ci95"]["autoregressive_error"]) == n and len(cp["ci95"]["diffusion_error"]) == n
    assert cp["horizons"] == sorted(cp["horizons"])
    assert all(e > 0 for e in cp["autoregressive_error"] + cp["diffusion_error"])
    ratio = cp["autoregressive_error"][-1] / cp["diffusion_error"][-1]
    assert abs(cp["error_ratio_at_max_horizon"] / ratio - 1) < 0.02
