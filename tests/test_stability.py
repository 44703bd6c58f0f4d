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
