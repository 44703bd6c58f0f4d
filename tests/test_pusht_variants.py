"""The Push-T ablations of Chapter 3's exercises: counting demonstrations near a start, and the summary."""

import numpy as np
import pytest

from tutorial_lib.experiments.pusht_variants import demos_near, gain_summary, start_states


def test_demos_near_counts_block_poses_within_both_radii_with_angles_modulo_two_pi():
    pose = np.array([[0.0, 0.0, 100.0, 100.0, 0.1]])
    states = np.array([
        [9, 9, 100.0, 139.0, 0.1],            # 39 px away: near
        [9, 9, 100.0, 141.0, 0.1],            # 41 px: not
        [9, 9, 100.0, 100.0, 0.1 + 0.34],     # 0.34 rad: near
        [9, 9, 100.0, 100.0, 0.1 + 0.36],     # 0.36 rad: not
        [9, 9, 100.0, 100.0, 2 * np.pi - 0.1],  # 0.2 rad the other way round: near
        [400, 400, 100.0, 100.0, 0.1],        # the agent does not count, only the block
    ])
    assert demos_near(pose, states).tolist() == [4]
    assert demos_near(np.repeat(pose, 3, axis=0), states[:2]).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match=r"must be \(N, 5\) state observations"):
        demos_near(pose[:, :4], states)


def test_start_states_are_the_environments_resets():
    from tutorial_lib.envs.pusht import PushTEnv

    starts = start_states([100, 101])
    assert starts.shape == (2, 5)
    np.testing.assert_allclose(starts[1], PushTEnv(obs_type="state").reset(seed=101)[0])
    assert not np.allclose(starts[0], starts[1])


def test_gain_summary_splits_the_episodes_by_what_the_mirror_did():
    entry = {"pusht-diffusion-policy": {"max_coverage": [0.9, 0.9, 0.5, 0.8]},
             "pusht-diffusion-policy-no-mirror": {"max_coverage": [0.5, 0.88, 0.9, 0.8]},
             "demos_near": {"own": [2, 10, 30, 50], "mirror": [20, 5, 40, 10]}}
    s = gain_summary(entry)
    assert (s["helped"], s["hurt"]) == (1, 1)
    assert s["own_median"] == {"helped": 2.0, "others": 30.0}
    assert s["mirror_richer"]["helped"] == 1.0 and s["mirror_richer"]["others"] == pytest.approx(1 / 3)
    assert s["gain"][0] == pytest.approx((0.4 + 0.02 - 0.4 + 0.0) / 4)


def test_the_paired_difference_is_taken_episode_by_episode():
    from tutorial_lib.experiments.pusht_variants import paired_difference

    entry = {"a": {"max_coverage": [0.9, 0.5, 0.7]}, "b": {"max_coverage": [0.8, 0.4, 0.6]}}
    mean, half = paired_difference(entry, "a", "b")
    assert mean == pytest.approx(0.1) and half == pytest.approx(0.0, abs=1e-9)   # the same gain on every start
    assert paired_difference(entry, "b", "a")[0] == pytest.approx(-0.1)


def test_the_ablation_recipes_change_one_setting_each():
    import dataclasses

    from tutorial_lib.core.recipes import get_recipe

    shipped = dataclasses.asdict(get_recipe("pusht-diffusion-policy").config())
    for name, changed in (("pusht-diffusion-policy-no-mirror", {"mirror": False}),
                          ("pusht-diffusion-policy-obs1", {"n_obs_steps": 1})):
        cfg = dataclasses.asdict(get_recipe(name).config())
        assert {k: v for k, v in cfg.items() if shipped[k] != v} == changed, name


def test_variants_entry_rolls_out_the_three_shipped_policies_on_the_given_starts():
    from tutorial_lib.experiments.pusht_variants import VARIANTS, variants_entry

    entry = variants_entry(seeds=(100, 101))
    assert entry["seeds"] == [100, 101] and entry["n_episodes"] == 2
    for name in VARIANTS:
        e = entry[name]
        assert len(e["max_coverage"]) == 2 and e["n_episodes"] == 2
        assert e["mean_max_coverage"] == pytest.approx(np.mean(e["max_coverage"]), abs=1e-4)
        assert max(e["max_coverage"]) > 0.5, f"{name} never brought the block halfway onto the target"
    assert len(entry["demos_near"]["own"]) == len(entry["demos_near"]["mirror"]) == 2
