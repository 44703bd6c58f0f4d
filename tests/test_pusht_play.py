"""Push-T play data (random pushes for the compounding study): determinism, contact, file checks."""

import numpy as np
import pytest

from tutorial_lib.core.assets import data_dir
from tutorial_lib.envs.pusht_play import PlayConfig, PlayPusher, generate_play_data, load_play_data, main, play_episode

SHORT = PlayConfig(episode_steps=40)


def test_episode_is_deterministic_by_seed_and_pushes_the_block():
    a, b, c = play_episode(7, SHORT), play_episode(7, SHORT), play_episode(8, SHORT)
    assert a["obs"].shape == (40, 5) and a["actions"].shape == (40, 2)
    assert np.array_equal(a["obs"], b["obs"]) and np.array_equal(a["actions"], b["actions"])
    assert not np.array_equal(a["actions"], c["actions"])
    full = play_episode(7)
    assert np.linalg.norm(full["obs"][-1, 2:4] - full["obs"][0, 2:4]) > 1.0, "the block was never moved"


def test_open_loop_commands_depend_on_the_start_state_only():
    """Open loop, the pusher's commands are the same whatever the block does after the first step;
    closed loop, they follow the block."""
    rng = np.random.default_rng(0)
    first = np.array([100.0, 100.0, 250.0, 250.0, 0.0])
    later = [first.copy() for _ in range(60)]
    moved = [np.r_[first[:2], rng.uniform(150, 350, 2), 0.0] for _ in range(60)]
    for open_loop, same in ((True, True), (False, False)):
        cfg = PlayConfig(open_loop=open_loop)
        runs = []
        for obs_seq in (later, moved):
            pusher = PlayPusher(cfg, seed=3)
            runs.append(np.array([pusher(first)] + [pusher(o) for o in obs_seq]))
        assert np.array_equal(runs[0], runs[1]) == same


def test_commands_move_at_most_the_top_speed_and_stay_inside():
    ep = play_episode(3)
    steps = np.linalg.norm(np.diff(ep["actions"], axis=0), axis=1)
    assert steps.max() <= PlayConfig().speed[1] + 1e-3
    assert ep["actions"].min() >= 10.0 - 1e-3 and ep["actions"].max() <= 502.0 + 1e-3


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="speed"):
        PlayConfig(speed=(0.0, 5.0))
    with pytest.raises(ValueError, match="episode_steps"):
        PlayConfig(episode_steps=0)
    with pytest.raises(ValueError, match="n_episodes"):
        generate_play_data(0)


def test_command_line_round_trip_and_corruption(tmp_path, capsys):
    out = tmp_path / "play.npz"
    main(["--episodes", "2", "--seed", "5", "--out", str(out)])
    data = load_play_data(str(out))
    assert data["obs"].shape == (128, 5) and list(data["episode_ends"]) == [64, 128]
    bad = dict(data, obs=data["obs"][:-1])
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        load_play_data(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "missing.npz", obs=data["obs"])
    with pytest.raises(ValueError, match="missing"):
        load_play_data(str(tmp_path / "missing.npz"))


def test_shipped_play_data_is_intact():
    data = load_play_data(str(data_dir() / "pusht" / "play.npz"))
    assert len(data["episode_ends"]) == 3000 and len(data["obs"]) == 192_000
    first = play_episode(int(data["episode_seeds"][0]))
    assert np.allclose(first["obs"], data["obs"][:64], atol=1e-4), "the shipped file is not what the command makes"
