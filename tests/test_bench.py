"""The benchmark command: a quick run prints progress and one JSON object on its last line."""

import json
import subprocess
import sys


def test_recap_bench_quick():
    out = subprocess.run([sys.executable, "-m", "tutorial_lib.bench", "recap", "--quick"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    lines = out.strip().splitlines()
    assert any(line.startswith("[bench]") for line in lines[:-1]), "progress lines expected before the JSON"
    result = json.loads(lines[-1])
    for key in ["langevin_mode_weight_error", "annealed_mode_weight_error", "ddpm_quality_ratio",
                "ddim10_quality_ratio", "sample_ms_ddpm", "sample_ms_ddim10"]:
        assert isinstance(result[key], float), key
    assert result["quick"] is True
    # even the small version shows plain Langevin's mode-weight problem
    assert result["langevin_mode_weight_error"] > 0.15 > result["annealed_mode_weight_error"]
