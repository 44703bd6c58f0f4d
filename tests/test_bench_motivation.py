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
    check_model_planning(result["model_planning"])
    check_stability(result["stability"])
    check_smoothness(result["smoothness"])
    de = result["data_efficiency"]
    assert de["n_demos"] == [10, 50] and len(de["bc_success"]) == len(de["diffusion_success"]) == 2
    for key in ("bc_success", "diffusion_success"):
        for rate, (low, high) in zip(de[key], de["ci95"][key]):
            assert low <= rate <= high


def check_model_planning(mp):
    for name in ("learned_mppi", "true_mppi", "diffuser"):
        e = mp[name]["open_loop"]
        assert 0 <= e["success"] <= 1 and e["n_episodes"] == mp["n_pairs"]
        assert e["plan_exec_gap"]["end"] >= 0 and e["plan_exec_gap"]["mean"] >= 0
    # the true model's plan is what the environment does (the same equations); a learned one's is not
    assert mp["true_mppi"]["open_loop"]["plan_exec_gap"]["end"] < 1e-6
    assert mp["learned_mppi"]["open_loop"]["plan_exec_gap"]["end"] > 1e-3
    ratio = mp["learned_mppi"]["open_loop"]["plan_exec_gap"]["end"] / mp["diffuser"]["open_loop"]["plan_exec_gap"]["end"]
    assert abs(mp["gap_ratio_learned_vs_diffuser"] - ratio) <= 0.01 * ratio + 0.01


def check_smoothness(sm):
    for task in ("pusht", "obstacle"):
        assert set(sm[task]) == {"bc", "dp_1", "dp_4", "dp_8", "demonstrations"}
        for name, e in sm[task].items():
            assert e["jerk"] > 0 and e["reversals"] >= 0, (task, name)
            if name != "demonstrations":
                assert e["n_action_steps"] == (int(name[3:]) if name.startswith("dp_") else 8)
    # the shipped diffusion policy pushes the T most of the way even on three starts; a broken one would not
    assert sm["pusht"]["dp_8"]["mean_max_coverage"] > 0.5


def check_compounding(cp):
    n = len(cp["horizons"])
    assert n >= 3 and len(cp["autoregressive_error"]) == n and len(cp["diffusion_error"]) == n
    assert len(cp["ci95"]["autoregressive_error"]) == n and len(cp["ci95"]["diffusion_error"]) == n
    assert cp["horizons"] == sorted(cp["horizons"])
    assert all(e > 0 for e in cp["autoregressive_error"] + cp["diffusion_error"])
    ratio = cp["autoregressive_error"][-1] / cp["diffusion_error"][-1]
    assert abs(cp["error_ratio_at_max_horizon"] / ratio - 1) < 0.02


def check_stability(st):
    assert set(st["by_dataset"]) == {"six_modes", "grid25"} and st["harder_dataset"] == "grid25"
    for name in ("ddpm", "gan"):
        e = st[name]
        assert e == st["by_dataset"]["grid25"][name]
        assert len(e["final_quality"]) == 2 and e["worst_seed_quality"] == max(e["final_quality"])
        assert 0 <= e["mode_coverage"] <= 1 and e["final_quality_cv"] >= 0
        assert -1 <= e["loss_quality_correlation"] <= 1


def test_the_stored_full_run_has_the_sweeps():
    """``data/bench/motivation.json`` (the full run the notebooks read) holds the noise sweep and the action horizons."""
    from tutorial_lib.core.assets import data_dir

    stored = json.loads((data_dir() / "bench" / "motivation.json").read_text())
    assert stored["quick"] is False
    check_model_planning(stored["model_planning"])
    ns = stored["model_planning"]["noise_sweep"]
    assert ns["sigma"] == [0.0, 0.01, 0.03, 0.1] and ns["n_pairs"] == 20
    for s in ns["sigma"]:
        e = ns["by_sigma"][f"{s:g}"]
        for name in ("learned_mppi", "true_mppi"):
            for mode in ("open_loop", "tracked"):
                r = e[name][mode]
                assert 0 <= r["success"] <= 1 and r["gap_end"] >= 0 and r["ci95"]["success"][0] <= r["success"]
        assert 0 <= e["diffuser"]["success"] <= 1
    # noise moves the perfect model's open-loop ball off its plan; tracking brings it back
    top = ns["by_sigma"]["0.1"]["true_mppi"]
    assert top["open_loop"]["gap_end"] > 3 * top["tracked"]["gap_end"]
    assert set(stored["smoothness"]["pusht"]) == {"bc", "dp_1", "dp_2", "dp_4", "dp_8", "dp_15", "demonstrations"}
