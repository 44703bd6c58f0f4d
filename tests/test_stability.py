"""The stability study: both trainers log their losses and scores on the same schedule, deterministically."""

from tutorial_lib.experiments.stability import StabilityConfig, stability_experiment, train_ddpm_run, train_gan_run

TINY = StabilityConfig(n_train=512, hidden=32, depth=1, n_steps=40, batch_size=64, n_diffusion_steps=50,
                       sample_steps=5, n_eval=200, eval_every=20, log_every=10)


def test_runs_log_losses_and_scores_on_the_same_schedule():
    ddpm, gan = train_ddpm_run(TINY, seed=0), train_gan_run(TINY, seed=0)
    assert len(ddpm["loss"]) == len(gan["d_loss"]) == len(gan["g_loss"]) == 4
    assert ddpm["eval_steps"] == gan["eval_steps"] == [20, 40]
    for run in (ddpm, gan):
        assert len(run["quality"]) == 2 and all(q > 0 for q in run["quality"])
        assert all(0 <= w <= 1 for w in run["mode_weight_error"])
        assert run["samples"].shape == (200, 2)
    assert ddpm["loss"][-1] < ddpm["loss"][0]          # the regression loss falls from the start


def test_experiment_is_deterministic_by_seed():
    a = stability_experiment(TINY, seeds=(0, 1))
    b = stability_experiment(TINY, seeds=(0, 1))
    assert a["ddpm_final_quality"] == b["ddpm_final_quality"]
    assert a["gan_final_quality"] == b["gan_final_quality"]
    assert a["ddpm_final_quality"][0] != a["ddpm_final_quality"][1]   # different seeds, different runs


def test_spearman_by_hand():
    import math
    import pytest
    from tutorial_lib.experiments.stability import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (0, 1, 2, 3) and (1, 0, 3, 2): 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 4 / 60 = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_summary_reads_the_runs():
    import pytest
    from tutorial_lib.experiments.stability import stability_summary

    cfg = StabilityConfig(eval_every=20, log_every=10)
    runs = [{"loss": [5, 4, 3, 2], "quality": [3.0, 2.0], "mode_coverage": [0.5, 1.0]},
            {"loss": [5, 4, 3, 1], "quality": [2.0, 4.0], "mode_coverage": [0.5, 0.5]}]
    gan = [{"g_loss": [1, 1, 1, 1], "d_loss": [1, 2, 3, 4], "quality": [2.0, 6.0], "mode_coverage": [1.0, 0.0]},
           {"g_loss": [1, 2, 1, 2], "d_loss": [4, 3, 2, 1], "quality": [2.0, 2.0], "mode_coverage": [1.0, 1.0]}]
    out = stability_summary({"eval_steps": [20, 40], "ddpm_runs": runs, "gan_runs": gan}, cfg)
    d = out["ddpm"]
    assert d["final_quality"] == [2.0, 4.0] and d["worst_seed_quality"] == 4.0 and d["best_seed_quality"] == 2.0
    assert d["final_quality_cv"] == pytest.approx(1.0 / 3.0)          # std 1 (population) over mean 3
    assert d["mode_coverage"] == pytest.approx(0.75)
    # run 0: losses at steps 20, 40 are 4, 2 and quality 3, 2 (both fall: +1); run 1: 4, 1 vs 2, 4 (-1)
    assert d["loss_quality_correlation"] == pytest.approx(0.0)
    assert d["final_loss_vs_quality_across_seeds"] == pytest.approx(-1.0)
    assert out["gan"]["mode_coverage"] == pytest.approx(0.5)
    assert out["gan"]["d_loss_quality_correlation"] == pytest.approx(1.0)   # run 1's quality is constant: NaN, skipped


def test_config_checks_the_dataset_and_the_schedules():
    import pytest

    with pytest.raises(ValueError, match="dataset"):
        StabilityConfig(dataset="swiss_roll")
    with pytest.raises(ValueError, match="multiple of log_every"):
        StabilityConfig(eval_every=25, log_every=10)


def test_spearman_gives_ties_their_mean_rank():
    import pytest
    from tutorial_lib.experiments.stability import spearman

    # ranks (0.5, 0.5, 2) and (0, 1, 2): centred (-0.5, -0.5, 1) and (-1, 0, 1) -> 1.5 / sqrt(1.5 * 2)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / (1.5 * 2) ** 0.5)
