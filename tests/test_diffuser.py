"""Diffuser: windows and normalisation, inpainting, the training loss, the planner, the recipe."""

import numpy as np
import pytest
import torch

from tutorial_lib.agents import diffuser_planner
from tutorial_lib.agents.diffuser_planner import DiffuserPlanner, Plan
from tutorial_lib.agents.diffuser import (apply_conditioning, diffuser_loss, load_diffuser, make_diffusion, random_conditions,
                                   sample_plans, start_goal_conditions, condition_mask, with_mask, cfg_inpainting_loss,
                                   diffuser_recipe_loss, maze_windows)
from tutorial_lib.diffusion.guidance import drop_condition
from tutorial_lib.envs.maze import point_mass_step
from tutorial_lib.envs.maze_data import generate_dataset
from tutorial_lib.envs.maze_expert import evaluate_policy, make_eval_pairs
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.nets import TemporalUnet
from tutorial_lib.agents.diffuser import DiffuserConfig
from tutorial_lib.core.recipes import get_recipe
from tutorial_lib.core.recipes import train_recipe
from tutorial_lib.core.training import TrainConfig, train
from tutorial_lib.agents.trajectories import (LimitsNormalizer, TrajectoryWindows, make_transitions, split_stream,
                                       window_starts)

UMAZE = "tutorial_lib/PointMaze-UMaze-v0"


@pytest.fixture(scope="module")
def umaze_data():
    return generate_dataset("umaze", 6_000, seed=3)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4)).eval()


# ----------------------------------------------------------------------------- normalisation, layout, windows
def test_normalizer_maps_the_data_range_to_minus_one_one_and_back():
    x = torch.randn(500, 6) * torch.tensor([1.0, 2, 3, 4, 5, 6]) + 7
    n = LimitsNormalizer.fit(x)
    y = n.normalize(x)
    assert torch.allclose(y.min(0).values, -torch.ones(6)) and torch.allclose(y.max(0).values, torch.ones(6))
    assert torch.allclose(n.unnormalize(y), x, atol=1e-5)
    # numpy in, numpy out; a saved and reloaded normaliser gives the same numbers
    arr = x.numpy()[:10]
    again = LimitsNormalizer.from_state_dict(n.state_dict())
    assert isinstance(again.normalize(arr), np.ndarray)
    np.testing.assert_allclose(again.unnormalize(again.normalize(arr)), arr, atol=1e-5)
    assert all(isinstance(v, float) for v in n.state_dict()["lo"])


def test_normalizer_constant_column_and_errors():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    n = LimitsNormalizer.fit(x)
    assert torch.isfinite(n.normalize(x)).all()
    assert torch.equal(n.normalize(x)[:, 1], -torch.ones(2))
    with pytest.raises(ValueError, match="expected 2 numbers in the last axis"):
        n.normalize(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="hi > lo"):
        LimitsNormalizer([0.0, 1.0], [1.0, 1.0])


def test_transitions_are_actions_then_observations(umaze_data):
    x = make_transitions(umaze_data)
    assert x.shape == (6_000, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :2], umaze_data["actions"])
    np.testing.assert_array_equal(x[:, 2:], umaze_data["observations"])


def test_window_starts_stay_inside_paths():
    paths = np.array([[0, 5], [5, 7], [7, 20]])
    starts = window_starts(paths, 3)
    np.testing.assert_array_equal(starts, [0, 1, 2] + list(range(7, 18)))
    assert len(window_starts(paths, 14)) == 0
    assert len(window_starts(paths, 13)) == 1


def test_sampled_windows_never_cross_path_boundaries():
    # column 0 numbers the rows, column 1 names the path: a window crossing a cut would mix two names
    paths = np.array([[0, 40], [40, 45], [45, 100], [100, 117]])
    rows = np.arange(117, dtype=np.float32)
    path_id = np.repeat(np.arange(4), np.diff(paths).ravel()).astype(np.float32)
    transitions = np.stack([rows, path_id, *np.zeros((4, 117), np.float32)], axis=1)
    windows = TrajectoryWindows(transitions, paths, horizon=16, normalizer=LimitsNormalizer([0.0] * 6, [1.0] * 6))
    assert len(windows) == 25 + 0 + 40 + 2
    x = windows.sample_batch(2_000, torch.Generator().manual_seed(0))
    assert x.shape == (2_000, 16, 6)
    raw = windows.normalizer.unnormalize(x)
    assert torch.equal(raw[:, 1:, 0] - raw[:, :-1, 0], torch.ones(2_000, 15))      # consecutive rows
    assert (raw[:, :, 1] == raw[:, :1, 1]).all()                                    # one path each
    assert set(raw[:, 0, 1].long().tolist()) == {0, 2, 3}                           # path 1 is too short


def test_maze_windows_follow_the_dynamics_and_avoid_goal_exits(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=32)
    paths = split_stream(umaze_data, "goal_exits")
    cuts = paths[1:, 0]
    s = windows.starts.numpy()
    assert not ((s[:, None] < cuts[None, :]) & (cuts[None, :] < s[:, None] + 32)).any()
    grid = MazeGrid.from_layout("umaze")
    walls = tuple(tuple(bool(w) for w in row) for row in grid.walls)
    x = windows.normalizer.unnormalize(windows.sample_batch(4, torch.Generator().manual_seed(1))).double().numpy()
    for w in x:
        for t in range(31):
            pos, vel = point_mass_step(walls, tuple(w[t, 2:4]), tuple(w[t, 4:6]), tuple(w[t, :2]))
            np.testing.assert_allclose(pos + vel, w[t + 1, 2:], atol=2e-3)
    with pytest.raises(ValueError, match="no path is at least 2000 steps long"):
        TrajectoryWindows.from_maze_data(umaze_data, horizon=2_000, split="arrivals")
    with pytest.raises(ValueError, match="unknown split 'episodes'"):
        split_stream(umaze_data, "episodes")


def test_strided_windows_keep_every_kth_step_of_one_path():
    paths = np.array([[0, 40], [40, 100]])
    rows = np.arange(100, dtype=np.float32)
    path_id = (rows >= 40).astype(np.float32)
    transitions = np.stack([rows, path_id, *np.zeros((4, 100), np.float32)], axis=1)
    windows = TrajectoryWindows(transitions, paths, horizon=8, stride=4,
                                normalizer=LimitsNormalizer([0.0] * 6, [1.0] * 6))
    assert len(windows) == (40 - 29 + 1) + (60 - 29 + 1)         # a window spans 7 * 4 + 1 = 29 steps
    raw = windows.normalizer.unnormalize(windows.sample_batch(500, torch.Generator().manual_seed(0)))
    assert raw.shape == (500, 8, 6)
    assert torch.equal(raw[:, 1:, 0] - raw[:, :-1, 0], torch.full((500, 7), 4.0))
    assert (raw[:, :, 1] == raw[:, :1, 1]).all()
    assert torch.equal(windows[3], windows.sample_all()[3])
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        TrajectoryWindows(transitions, paths, horizon=8, stride=0)


# ----------------------------------------------------------------------------- inpainting
def test_nan_conditions_leave_entries_free():
    x = torch.randn(2, 8, 6)
    goal_pos = torch.tensor([0.3, -0.4, float("nan"), float("nan")])
    per_sample = torch.tensor([[0.1, 0.2, 0.3, 0.4], [float("nan")] * 4])
    y = apply_conditioning(x, {5: goal_pos, 2: per_sample})
    assert torch.equal(y[:, 5, 2:4], goal_pos[:2].expand(2, 2)) and torch.equal(y[:, 5, 4:], x[:, 5, 4:])
    assert torch.equal(y[0, 2, 2:], per_sample[0]) and torch.equal(y[1, 2], x[1, 2])
    assert not torch.isnan(y).any()


def test_condition_mask_marks_the_pinned_entries_and_reaches_the_network():
    cond = {0: torch.zeros(4), 5: torch.tensor([[0.1, 0.2, float("nan"), float("nan")], [float("nan")] * 4])}
    mask = condition_mask(cond, (2, 8, 6))
    assert mask.shape == (2, 8, 4)
    assert mask[:, 0].eq(1).all() and mask[0, 5].tolist() == [1, 1, 0, 0] and mask[1, 5].eq(0).all()
    assert mask.sum() == 2 * 4 + 2
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2), mask_dim=4).eval()
    x, t = torch.randn(2, 8, 6), torch.zeros(2, dtype=torch.long)
    f = with_mask(net, cond, (2, 8, 6))
    assert f(x, t).shape == (2, 8, 6)
    assert not torch.allclose(f(x, t), with_mask(net, {0: torch.zeros(4)}, (2, 8, 6))(x, t))   # the mask matters
    assert with_mask(tiny_unet(), cond, (2, 8, 6)) is not None                                  # no mask: the net itself
    with pytest.raises(ValueError, match=r"6 \+ mask 4"):
        net(x, t)
    # the loss hands the mask of its own conditions to the network
    seen = {}

    def spy(inp, t):
        seen["mask"] = inp[..., 6:]
        return net(inp, t)
    spy.mask_dim = 4
    diffuser_loss(spy, make_diffusion(8), torch.rand(3, 8, 6), torch.Generator().manual_seed(0))
    assert seen["mask"][:, 0].eq(1).all() and seen["mask"][:, -1].eq(1).all() and seen["mask"][:, 1:-1].eq(0).all()


def test_random_training_conditions():
    x0 = torch.rand(4_000, 16, 6)
    cond = random_conditions(x0, torch.Generator().manual_seed(0))
    assert torch.equal(cond[0], x0[:, 0, 2:])                         # the start, always
    goal_rows = ~torch.isnan(cond[15][:, 2])                          # velocities pinned only by the goal
    assert 0.45 < goal_rows.float().mean() < 0.55
    assert torch.equal(cond[15][goal_rows], x0[goal_rows, 15, 2:])
    via = torch.stack([~torch.isnan(cond[t][:, 0]) for t in range(1, 15)], 1)      # (B, 14) positions pinned
    assert via.sum(1).max() <= 1 and 0.4 < via.any(1).float().mean() < 0.5        # p = 0.5 * 14 / 15
    rows, ks = via.nonzero(as_tuple=True)
    assert torch.equal(cond_pos := torch.stack([cond[int(k) + 1][r, :2] for r, k in zip(rows[:50], ks[:50])]),
                       torch.stack([x0[r, int(k) + 1, 2:4] for r, k in zip(rows[:50], ks[:50])]))
    assert torch.isnan(torch.stack([cond[t][:, 2:] for t in range(1, 15)])).all()   # via-points: positions only
    assert cond_pos.shape == (50, 2)
    # the loss: zero for an oracle of the clean window; for a net that predicts zeros, the mean square of the
    # entries the conditions do not pin (pinned ones are inpainted into the estimate and cost nothing)
    batch = x0[:64]
    oracle = diffuser_loss(lambda x, t: batch.clone(), make_diffusion(8), batch, torch.Generator().manual_seed(1),
                           conditioning="random")
    assert oracle.item() == 0.0
    zero = diffuser_loss(lambda x, t: torch.zeros_like(x), make_diffusion(8), batch,
                         torch.Generator().manual_seed(1), conditioning="random")
    pinned = torch.zeros_like(batch, dtype=torch.bool)
    for t, value in random_conditions(batch, torch.Generator().manual_seed(1)).items():
        pinned[:, t, 2:] = ~torch.isnan(value)
    assert zero.item() == pytest.approx((batch ** 2 * ~pinned).sum().item() / batch.numel(), rel=1e-5)
    with pytest.raises(ValueError, match="conditioning must be 'start_goal' or 'random'"):
        diffuser_loss(lambda x, t: x, make_diffusion(8), x0[:4], conditioning="goal")


def test_apply_conditioning_overwrites_only_the_given_states():
    x = torch.randn(3, 8, 6)
    start, goal, via = torch.randn(3, 4), torch.randn(4), torch.randn(4)
    y = apply_conditioning(x, {0: start, 7: goal, 3: via})
    assert torch.equal(y[:, 0, 2:], start) and torch.equal(y[:, 7, 2:], goal.expand(3, 4))
    assert torch.equal(y[:, 3, 2:], via.expand(3, 4))
    mask = torch.ones(3, 8, 6, dtype=torch.bool)
    mask[:, [0, 3, 7], 2:] = False
    assert torch.equal(y[mask], x[mask])          # actions and the other states untouched
    assert not torch.equal(x[:, 0, 2:], start)    # the input is not modified
    assert torch.equal(apply_conditioning(x, {-1: goal})[:, 7, 2:], goal.expand(3, 4))


def test_apply_conditioning_errors():
    x = torch.zeros(2, 8, 6)
    with pytest.raises(ValueError, match="time index 8 lies outside the horizon H = 8"):
        apply_conditioning(x, {8: torch.zeros(4)})
    with pytest.raises(ValueError, match=r"condition at t = 0 must be an observation of shape \(4,\) or \(2, 4\)"):
        apply_conditioning(x, {0: torch.zeros(6)})


@pytest.mark.parametrize("ddim_steps", [None, 5])
def test_conditioned_entries_are_exact_after_every_denoising_step(ddim_steps):
    net, diffusion = tiny_unet(), make_diffusion(10)
    cond = {0: torch.tensor([0.1, -0.2, 0.3, 0.0]), 15: torch.tensor([-0.5, 0.5, 0.0, 0.0]),
            6: torch.tensor([0.7, 0.7, 0.1, -0.1])}
    traj = sample_plans(net, diffusion, cond, (4, 16, 6), ddim_steps=ddim_steps,
                        generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert traj.shape == ((ddim_steps or 10) + 1, 4, 16, 6)
    for t, value in cond.items():
        assert torch.equal(traj[:, :, t, 2:], value.expand(traj.shape[0], 4, 4)), f"state {t} drifted"
    # everything else is sampled: it moves between steps and differs between samples
    assert not torch.equal(traj[1, :, 1:6], traj[-1, :, 1:6])
    assert not torch.equal(traj[-1, 0], traj[-1, 1])
    assert traj[-1].abs().max() <= 1.0 + 1e-6      # x0 estimates are clipped to the data range


def test_training_loss_conditions_the_input_and_ignores_conditioned_outputs():
    diffusion = make_diffusion(10)
    x0 = torch.rand(5, 16, 6) * 2 - 1
    seen = {}

    def oracle(x_t, t):
        seen["x_t"] = x_t
        out = x0.clone()
        out[:, 0, 2:] = 100.0        # wrong where the conditions will overwrite it
        out[:, -1, 2:] = -100.0
        return out

    loss = diffuser_loss(oracle, diffusion, x0, torch.Generator().manual_seed(0))
    assert loss.item() == 0.0
    assert torch.equal(seen["x_t"][:, 0, 2:], x0[:, 0, 2:]) and torch.equal(seen["x_t"][:, -1, 2:], x0[:, -1, 2:])
    assert not torch.equal(seen["x_t"][:, 1:-1], x0[:, 1:-1])   # the rest is noised
    cond = start_goal_conditions(x0)
    assert sorted(cond) == [0, 15]


def test_training_loss_decreases(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    diffusion = make_diffusion(10)
    x0 = windows.sample_batch(256, torch.Generator().manual_seed(5))

    def held_out_loss(model):  # same windows, steps and noise for every model
        with torch.no_grad():
            return diffuser_loss(model, diffusion, x0, torch.Generator().manual_seed(6)).item()

    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=6, dim=16, dim_mults=(1, 2))
    cfg = TrainConfig(n_steps=60, batch_size=32, lr=3e-3, ema_decay=0.9, log_every=10, seed=0)
    res = train(net, lambda m, x, g: diffuser_loss(m, diffusion, x, g), windows.sample_batch, cfg,
                name="test-diffuser", progress=False, device="cpu")
    losses = res.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    # better than predicting the mean window (zeros in normalised units), which a stalled net would do
    assert held_out_loss(res.model) < 0.75 * held_out_loss(lambda x, t: torch.zeros_like(x))


# ----------------------------------------------------------------------------- planner
def test_planner_runs_end_to_end_on_umaze(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, horizon=16, n_samples=3,
                              ddim_steps=4, replan_every=60, device="cpu")
    pairs = make_eval_pairs("umaze", 2, seed=0)
    result = evaluate_policy(UMAZE, planner, pairs)
    assert result.returns.shape == (2,) and result.success.dtype == bool
    assert 2 <= planner.n_plans <= 5                  # 300 steps, a new plan every 60 unless holding at the goal
    plan = planner.plan_result
    assert isinstance(plan, Plan)
    assert plan.observations.shape == (3, 4, 4) and plan.actions.shape == (3, 4, 2)   # the shortest replan
    assert np.isfinite(plan.observations).all()
    lo, hi = windows.normalizer.lo.numpy(), windows.normalizer.hi.numpy()
    assert (plan.observations >= lo[2:] - 1e-4).all() and (plan.observations <= hi[2:] + 1e-4).all()


def test_plan_starts_at_the_state_and_ends_at_the_goal_at_rest(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, horizon=16, device="cpu")
    state, goal = np.array([3.0, 1.1, 0.5, -0.2]), np.array([1.0, 1.0])
    plan = planner.plan(state, goal)
    np.testing.assert_allclose(plan.observations[0, 0], state, atol=1e-5)
    np.testing.assert_allclose(plan.observations[0, -1], [1.0, 1.0, 0.0, 0.0], atol=1e-5)
    # the same seed gives the same plan
    planner.reset()
    np.testing.assert_array_equal(planner.plan(state, goal).observations, plan.observations)


def test_pd_law_tracks_the_next_planned_state(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, horizon=16, kp=2.0, kd=0.5,
                              device="cpu")
    obs, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    action = planner(obs, goal)
    r = planner.plan_result.observations[0, 1]
    expected = np.clip(2.0 * (r[:2] - obs[:2]) + 0.5 * (r[2:] - obs[2:]), -1, 1)
    np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-6)
    assert planner.n_plans == 1
    planner(obs, goal)
    assert planner.n_plans == 1                      # open loop: no new plan for the same goal
    planner(obs, np.array([3.0, 3.0]))
    assert planner.n_plans == 2                      # a new goal: a new plan
    last = planner.plan_result.observations[0, -1]
    np.testing.assert_allclose(planner.reference(40), [last[0], last[1], 0.0, 0.0])


def test_replans_keep_the_first_plans_arrival_time(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=32)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), windows.normalizer, horizon=32, replan_every=8,
                              device="cpu")
    goal, horizons, starts = np.array([1.0, 1.0]), [], []
    rng = np.random.default_rng(0)
    for t in range(40):
        obs = np.array([3.0, 1.0, 0.0, 0.0]) + rng.uniform(-0.1, 0.1, 4)
        planner(obs, goal)
        if planner.k == 1:
            horizons.append(planner.plan_result.observations.shape[1])
            starts.append((obs, planner.plan_result.observations[0, 0]))
    assert horizons == [32, 24, 16, 8, 8]            # 32 - steps taken, never below H // 4
    for obs, first in starts:
        np.testing.assert_allclose(first, obs, atol=1e-5)


def test_earliest_arrival_follows_the_first_plan_that_keeps_the_data_speed(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16, stride=4)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(6), windows.normalizer, horizon=16, stride=4,
                              arrival="earliest", n_arrivals=4, n_samples=2, device="cpu")
    np.testing.assert_array_equal(planner.arrival_indices(16), [4, 8, 11, 15])
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    plan = planner.plan(state, goal)
    assert plan.observations.shape == (8, 16, 4)
    np.testing.assert_array_equal(plan.arrival, [4, 4, 8, 8, 11, 11, 15, 15])
    for b, k in enumerate(plan.arrival):                       # goal position pinned at the arrival index
        np.testing.assert_allclose(plan.observations[b, k, :2], goal, atol=1e-5)
        np.testing.assert_allclose(plan.observations[b, 0], state, atol=1e-5)
    ok = planner.feasible(plan.observations, plan.arrival)
    assert plan.chosen == (int(np.flatnonzero(ok)[0]) if ok.any() else 7)
    # the check itself: a jump faster than the data's top speed before the arrival fails it, after it does not
    line = np.zeros((2, 16, 4))
    line[:, :, 0] = np.linspace(0, 0.1, 16)
    line[:, 5, 0] += 2.5 * planner.max_speed[0] * 4 * 0.01
    np.testing.assert_array_equal(planner.feasible(line, np.array([15, 4])), [False, True])
    # tracking: interpolation between points, the goal at rest after the arrival
    planner.plan_result, planner.stride = plan, 4
    seq, k = plan.observations[plan.chosen], plan.arrival[plan.chosen]
    np.testing.assert_allclose(planner.reference(1), 0.5 * seq[0] + 0.5 * seq[1], atol=1e-6)
    np.testing.assert_allclose(planner.reference(4 * k + 10), [*goal, 0, 0], atol=1e-5)
    planner.lookahead = 6                                      # track further ahead: plan time (1 + 6) / 4
    np.testing.assert_allclose(planner.reference(1), 0.25 * seq[1] + 0.75 * seq[2], atol=1e-6)
    with pytest.raises(ValueError, match="lookahead must be >= 1"):
        DiffuserPlanner(tiny_unet(), make_diffusion(6), windows.normalizer, horizon=16, lookahead=0)


def test_planner_rejects_bad_arguments(umaze_data):
    n = LimitsNormalizer.fit(make_transitions(umaze_data))
    with pytest.raises(ValueError, match="control must be 'pd'"):
        DiffuserPlanner(tiny_unet(), make_diffusion(8), n, horizon=16, control="torque")
    with pytest.raises(ValueError, match="arrival must be 'end'"):
        DiffuserPlanner(tiny_unet(), make_diffusion(8), n, horizon=16, arrival="soon")
    with pytest.raises(ValueError, match="needs a plan of every step"):
        DiffuserPlanner(tiny_unet(), make_diffusion(8), n, horizon=16, control="actions", stride=4)
    with pytest.raises(ValueError, match="normalizer must cover the 6 transition coordinates"):
        DiffuserPlanner(tiny_unet(), make_diffusion(8), n.sub(2, 6), horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(8), n, horizon=16, device="cpu")
    with pytest.raises(ValueError, match=r"state must be \(x, y, vx, vy\)"):
        planner.plan(np.zeros(2), np.zeros(2))


# ----------------------------------------------------------------------------- recipe
def test_config_checks():
    with pytest.raises(ValueError, match="horizon = 130 must be a multiple of 4"):
        DiffuserConfig(horizon=130)
    with pytest.raises(ValueError, match="split must be one of"):
        DiffuserConfig(split="episodes")
    large = get_recipe("maze-large-diffuser").config()
    assert (large.layout, large.horizon * large.stride, large.n_diffusion_steps) == ("large", 384, 64)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        DiffuserConfig(stride=0)
    with pytest.raises(ValueError, match="conditioning must be"):
        DiffuserConfig(conditioning="goal")
    paper = DiffuserConfig()   # the class defaults are the paper's U-Maze settings
    assert (paper.horizon, paper.stride, paper.n_diffusion_steps, paper.dim, paper.dim_mults) == (128, 1, 64, 32, (1, 4, 8))
    assert (paper.lr, paper.batch_size, paper.ema_decay, paper.conditioning) == (2e-4, 32, 0.995, "start_goal")
    umaze = get_recipe("maze-umaze-diffuser").config()
    assert (umaze.horizon, umaze.stride, umaze.dim, umaze.conditioning) == (32, 4, 16, "random")


def test_recipe_trains_saves_the_normalizer_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_LIB_DATA", str(tmp_path / "data"))
    cfg = get_recipe("maze-umaze-diffuser").config(
        n_transitions=3_000, horizon=16, n_diffusion_steps=8, dim=8, dim_mults=(1, 2), n_steps=20, batch_size=8)
    path = tmp_path / "umaze.pt"
    result = train_recipe("maze-umaze-diffuser", cfg, checkpoint_path=path, device="cpu", progress=False)
    assert result.step == 20 and (tmp_path / "data" / "maze" / "umaze_3000_seed0.npz").is_file()
    ckpt = torch.load(path, weights_only=True)
    assert len(ckpt["extra"]["normalizer"]["lo"]) == 6
    model, diffusion, normalizer, loaded_cfg = load_diffuser("maze-umaze-diffuser", path=path, device="cpu")
    assert loaded_cfg == cfg and diffusion.n_diffusion_steps == 8 and diffusion.prediction == "x0"
    assert normalizer.state_dict() == ckpt["extra"]["normalizer"]
    assert model.mask_dim == 4          # the book's recipes tell the network which states are pinned
    plan = sample_plans(model, diffusion, {0: torch.zeros(4)}, (1, 16, 6), ddim_steps=2,
                        generator=torch.Generator().manual_seed(0))
    assert plan.shape == (1, 16, 6)


# ----------------------------------------------------------------------------- warm start (Diffuser §5.4)
class CountingNet(torch.nn.Module):
    """Wraps a denoiser and counts its calls."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0
        self.horizon_multiple = getattr(net, "horizon_multiple", 1)

    def forward(self, x, t):
        self.calls += 1
        return self.net(x, t)


def test_a_warm_start_from_the_data_with_an_oracle_denoiser_returns_the_data():
    """With a denoiser that knows ``x_0``, DDIM (eta 0) from any intermediate step lands on ``x_0``."""
    diffusion = make_diffusion(20)
    x0 = torch.rand(2, 8, 6) * 1.6 - 0.8
    oracle = lambda x, t: x0
    for t_start in (0, 4, 19):
        x_t = diffusion.q_sample(x0, torch.full((2,), t_start), generator=torch.Generator().manual_seed(1))
        out = diffusion.ddim_sample_loop(oracle, x0.shape, 3 if t_start else 1, x_T=x_t, t_start=t_start)
        torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    assert diffusion.ddim_timesteps(4, t_start=9) == [9, 7, 4, 1]
    with pytest.raises(ValueError, match="t_start"):
        diffusion.ddim_sample_loop(oracle, x0.shape, 2, t_start=5)          # no x_T to start from
    with pytest.raises(ValueError, match="t_start"):
        diffusion.ddim_timesteps(2, t_start=20)
    with pytest.raises(ValueError, match="t_start"):
        diffusion.p_sample_loop(oracle, x0.shape, x_T=x0, t_start=-1)


def test_warm_replans_cost_their_share_of_the_steps_and_keep_start_and_arrival(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16, stride=4)
    net = CountingNet(tiny_unet())
    planner = DiffuserPlanner(net, make_diffusion(20), windows.normalizer, horizon=16, stride=4, ddim_steps=8,
                              arrival="earliest", n_arrivals=4, replan_every=8, warm_start=0.25, device="cpu")
    goal = np.array([1.0, 1.0])
    rng = np.random.default_rng(0)
    obs = np.array([3.0, 1.0, 0.0, 0.0])
    planner(obs, goal)
    first = planner.plan_result
    assert net.calls == 8 and planner.n_warm == 0                      # a cold plan: 8 DDIM steps
    assert planner.denoiser_evals == 4 * 8                              # on 4 candidates at once
    arrival = int(first.arrival[first.chosen])
    for _ in range(7):
        planner(obs, goal)
    obs = obs + rng.uniform(-0.1, 0.1, 4)
    calls = net.calls
    planner(obs, goal)                                                  # the 9th step replans
    plan = planner.plan_result
    if arrival - 2 >= 1:                                                # 8 steps = 2 points at stride 4
        assert planner.n_warm == 1 and net.calls - calls == 2           # a quarter of 8 DDIM steps
        assert planner.denoiser_evals == 4 * 8 + 2                      # on one plan
        np.testing.assert_array_equal(plan.arrival, [arrival - 2])
        np.testing.assert_allclose(plan.observations[0, 0], obs, atol=1e-5)
        np.testing.assert_allclose(plan.observations[0, arrival - 2, :2], goal, atol=1e-5)
    else:                                                               # already due: a cold replan
        assert planner.n_warm == 0 and net.calls - calls == 8
    with pytest.raises(ValueError, match="warm_start"):
        DiffuserPlanner(net, make_diffusion(20), windows.normalizer, horizon=16, warm_start=1.5)



# ----------------------------------------------------------------------------- tracking by progress
def test_progress_tracking_waits_for_a_ball_that_does_not_move_and_replans_when_it_stalls(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16, stride=4)
    kw = dict(horizon=16, stride=4, ddim_steps=4, lookahead=4, device="cpu")
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    by_time = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, **kw)
    by_progress = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, tracking="progress",
                                  replan_stalled=10, **kw)
    first = [p(state, goal) for p in (by_time, by_progress)]
    np.testing.assert_allclose(first[0], first[1])                  # same plan, same first reference
    for _ in range(9):                                               # the ball stays where it is
        a_time, a_progress = by_time(state, goal), by_progress(state, goal)
    assert by_progress.progress == 0 and by_progress.n_plans == 1
    np.testing.assert_allclose(a_progress, first[1])                # still pulled to the same point
    assert not np.allclose(a_time, first[0])                        # the clock's reference has moved on
    by_progress(state, goal); by_progress(state, goal)              # 10 steps without progress: a new plan
    assert by_progress.n_plans == 2 and by_progress.n_stalled == 1
    # on a straight plan: a ball that follows it makes progress, at most 2 * lookahead steps per step
    line = np.zeros((1, 16, 4))
    line[0, :, 0] = np.linspace(3.0, 1.0, 16)
    line[0, :, 1] = 1.0
    by_progress.plan_result = Plan(observations=line, actions=np.zeros((1, 16, 2)), arrival=np.array([15]))
    by_progress.k = by_progress.progress = 1
    by_progress(line[0, 2], goal)
    assert by_progress.progress == 2
    by_progress(line[0, 9], goal)
    assert by_progress.progress == 4                                # 2 points (8 steps) ahead at most
    by_progress(line[0, 0], goal)
    assert by_progress.progress == 4                                # never backwards
    for bad in (dict(tracking="nearest"), dict(replan_stalled=5), dict(tracking="progress", replan_stalled=0)):
        with pytest.raises(ValueError, match="tracking|replan_stalled"):
            DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, horizon=16, **bad)


def test_no_replan_once_the_plan_has_arrived_and_the_ball_is_at_the_goal(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), windows.normalizer, horizon=16, replan_every=4,
                              device="cpu")
    goal = np.array([1.0, 1.0])
    planner(np.array([1.2, 1.0, 0.0, 0.0]), goal)
    for _ in range(20):                                             # in the goal disc, plan due at step 15
        planner(np.array([1.2, 1.0, 0.0, 0.0]), goal)
    n = planner.n_plans
    assert n == 4                                                   # replans at 4, 8, 12; then it holds
    planner(np.array([2.5, 1.0, 0.0, 0.0]), goal)                   # knocked out of the disc: replans
    assert planner.n_plans == n + 1


# ----------------------------------------------------------------------------- losses of the recipes
def test_random_conditions_pin_one_position_after_the_start_in_every_window_when_asked_to():
    x0 = torch.rand(2_000, 8, 6)
    cond = random_conditions(x0, torch.Generator().manual_seed(0), p_goal=0.0, p_position=1.0)
    free = torch.zeros(2_000, dtype=torch.bool)
    pinned = torch.stack([~torch.isnan(cond[t][:, 0]) if t in cond else free for t in range(1, 8)], 1)   # (B, 7)
    assert (pinned.sum(1) == 1).all()                  # exactly one index k in 1 .. H - 1 per window, never 0
    assert (pinned.sum(0) > 200).all()                 # each of them drawn (2000 / 7 on average)
    assert torch.isnan(cond[7][:, 2:]).all()           # no goal: the last state's velocity stays free


def test_cfg_inpainting_loss_inpaints_the_conditions_and_drops_the_film_condition():
    """State-only windows (``action_dim = 0``): the network sees the conditioned noisy window and the condition
    with its keep flag, drawn (with the null token at ``p_uncond``) from the loss's generator first."""
    diffusion = make_diffusion(8)
    x0 = torch.rand(64, 8, 4) * 2 - 1
    conditions, cond = {0: x0[:, 0]}, torch.rand(64, 3)
    seen = {}

    def zero(x, t, c):
        seen.update(x=x, t=t, c=c)
        return torch.zeros_like(x)
    loss = cfg_inpainting_loss(zero, diffusion, x0, conditions, cond, 0.5, torch.Generator().manual_seed(0),
                               action_dim=0)
    expected_c = drop_condition(cond, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(seen["c"], expected_c) and 10 < (expected_c[:, -1] == 0).sum() < 54   # some rows dropped
    assert torch.equal(seen["x"][:, 0], x0[:, 0]) and not torch.equal(seen["x"][:, 1:], x0[:, 1:])
    assert seen["t"].shape == (64,) and ((seen["t"] >= 0) & (seen["t"] < 8)).all()
    # the start is inpainted into the estimate too: only the other 7 states cost
    assert loss.item() == pytest.approx((x0[:, 1:] ** 2).sum().item() / x0.numel(), rel=1e-5)
    # the noise comes from the generator, not from the global RNG
    identity = lambda x, t, c: x
    torch.manual_seed(1)
    first = cfg_inpainting_loss(identity, diffusion, x0, conditions, cond, 0.5, torch.Generator().manual_seed(2),
                                action_dim=0)
    torch.manual_seed(3)
    assert cfg_inpainting_loss(identity, diffusion, x0, conditions, cond, 0.5, torch.Generator().manual_seed(2),
                               action_dim=0).item() == first.item()


def test_recipe_loss_is_diffusers_loss_with_the_configs_schedule_and_conditioning():
    cfg = DiffuserConfig(horizon=8, dim_mults=(1, 2), n_diffusion_steps=32, schedule="linear", conditioning="random")
    x0 = torch.rand(16, 8, 6) * 2 - 1
    half = lambda x, t: 0.5 * x
    torch.manual_seed(1)
    got = diffuser_recipe_loss(cfg, "cpu")(half, x0, torch.Generator().manual_seed(0)).item()
    torch.manual_seed(2)
    loss = lambda schedule, **kw: diffuser_loss(half, make_diffusion(32, schedule), x0,
                                                 torch.Generator().manual_seed(0), **kw).item()
    assert got == loss("linear", conditioning="random")
    assert got != loss("cosine", conditioning="random") and got != loss("linear")   # both settings matter here


def test_maze_windows_read_the_configs_stream_split_and_stride(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_LIB_DATA", str(tmp_path))
    cfg = DiffuserConfig(n_transitions=3_000, data_seed=1, split="arrivals", horizon=8, stride=2, dim_mults=(1, 2))
    windows = maze_windows(cfg)
    assert (tmp_path / "maze" / "umaze_3000_seed1.npz").is_file()
    expected = TrajectoryWindows.from_maze_data(generate_dataset("umaze", 3_000, seed=1), 8, split="arrivals", stride=2)
    assert torch.equal(windows.starts, expected.starts) and torch.equal(windows.sample_all(), expected.sample_all())
    other = TrajectoryWindows.from_maze_data(generate_dataset("umaze", 3_000, seed=1), 8, stride=2)
    assert not torch.equal(windows.starts, other.starts)       # the split matters for this stream


# ----------------------------------------------------------------------------- planner: figures, replans, holding
def test_denoising_trajectory_shows_every_step_of_a_plan_inside_the_data_range(umaze_data):
    windows = TrajectoryWindows.from_maze_data(umaze_data, horizon=16)
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(8), windows.normalizer, horizon=16, ddim_steps=4,
                              n_samples=2, device="cpu")
    state, goal = np.array([2.9, 1.1, 0.5, -0.2]), np.array([1.0, 1.0])
    traj, arrival = planner.denoising_trajectory(state, goal, horizon=8)
    assert traj.shape == (5, 2, 8, 4)                            # 4 DDIM steps and the conditioned noise
    np.testing.assert_array_equal(arrival, [7, 7])
    np.testing.assert_allclose(traj[:, :, 0], np.broadcast_to(state, (5, 2, 4)), atol=1e-5)         # the start
    np.testing.assert_allclose(traj[:, :, 7], np.broadcast_to([1.0, 1.0, 0.0, 0.0], (5, 2, 4)), atol=1e-5)  # the goal
    lo, hi = windows.normalizer.lo[2:].numpy(), windows.normalizer.hi[2:].numpy()
    assert (traj >= lo - 1e-5).all() and (traj <= hi + 1e-5).all()      # the noise is clipped to the data range
    assert np.isclose(traj[0], lo, atol=1e-5).any() and np.isclose(traj[0], hi, atol=1e-5).any()   # on both sides
    torch.manual_seed(5)                                         # the planner's generator alone draws the noise
    planner.reset()
    np.testing.assert_allclose(traj[-1], planner.plan(state, goal, horizon=8).observations, atol=1e-5)
    assert planner.denoising_trajectory(state, goal)[0].shape == (5, 2, 16, 4)    # default: the planner's horizon


def test_replan_horizon_counts_the_points_left_rounded_up_to_the_networks_multiple(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))

    class Plain(torch.nn.Module):                                 # a denoiser without ``horizon_multiple``
        def forward(self, x, t):
            return x

    def horizons(model, t_goals, **kw):
        planner = DiffuserPlanner(model, make_diffusion(4), normalizer, horizon=16, device="cpu", **kw)
        out = []
        for t_goal in t_goals:
            planner.t_goal = t_goal
            out.append(planner.replan_horizon())
        return out

    # 16 - t_goal / 4 points left, rounded up, at least H // 4 = 4
    assert horizons(Plain(), [0, 3, 4, 8, 13, 48, 60], stride=4) == [16, 16, 15, 14, 13, 4, 4]
    assert horizons(tiny_unet(), [4, 8, 20, 36], stride=4) == [16, 16, 12, 8]      # multiples of 4 for the U-Net
    assert horizons(tiny_unet(), [8], arrival="earliest") == [16]                   # earliest: always H


def _line(n=16, arrival=15):
    """A followed plan along y = 1 from x = 3 to the goal (1, 1), every point (and action) distinct."""
    obs, actions = np.zeros((1, n, 4), np.float32), np.zeros((1, n, 2), np.float32)
    obs[0, :, 0], obs[0, :, 1] = np.linspace(3.0, 1.0, n), 1.0
    obs[0, :, 2], obs[0, :, 3] = -1.0, np.linspace(-0.2, 0.2, n)
    actions[0, :, 0], actions[0, :, 1] = np.linspace(-0.5, 0.5, n), 0.1
    return Plan(observations=obs, actions=actions, arrival=np.array([arrival]))


def test_progress_restarts_with_each_plan_moves_at_most_two_lookaheads_and_counts_stalls(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, stride=4, lookahead=1,
                              tracking="progress", replan_stalled=5, device="cpu")
    goal, line = np.array([1.0, 1.0]), _line()
    planner.plan_result, planner.goal = line, goal.copy()
    pts = line.observations[0]
    planner.k, planner.progress = 0, 5                 # a new plan (k = 0): the progress starts over at its point 0
    planner(pts[1], goal)
    assert planner.progress == 1
    planner.k, planner.progress = 1, 3                 # later steps search from the point reached ...
    planner(pts[4], goal)
    assert planner.progress == 4
    planner(pts[9], goal)                              # ... and ceil(2 * lookahead / stride) = 1 point ahead at most
    assert planner.progress == 5 and planner.stalled == 0
    planner.stalled = 3
    planner(pts[5], goal)                              # no progress: one more stalled step
    assert planner.progress == 5 and planner.stalled == 4
    planner(pts[6], goal)                              # progress again: the count starts over
    assert planner.progress == 6 and planner.stalled == 0


def test_holding_starts_at_the_arrival_in_the_goal_disc(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    at_goal, on_rim = np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.5, 1.0, 0.0, 0.0])   # GOAL_RADIUS = 0.5 away
    by_time = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, stride=4, device="cpu")
    by_time.plan_result, by_time.goal = _line(arrival=3), np.array([1.0, 1.0])
    by_time.k = 10                                     # (k + lookahead) / stride = 2.75 < 3: not yet
    assert not by_time.holding(at_goal)
    by_time.k = 11                                     # exactly at the arrival, on the rim of the disc
    assert by_time.holding(at_goal) and by_time.holding(on_rim) and not by_time.holding(on_rim + [0.01, 0, 0, 0])
    by_progress = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, stride=4,
                                  tracking="progress", device="cpu")
    by_progress.plan_result, by_progress.goal = _line(arrival=3), np.array([1.0, 1.0])
    by_progress.k, by_progress.progress = 40, 2        # (2 * 4 + 1) / 4 = 2.25: the plan has not arrived, however long
    assert not by_progress.holding(at_goal)
    by_progress.k, by_progress.progress = 0, 3         # (3 * 4 + 1) / 4 = 3.25
    assert by_progress.holding(at_goal)
    # a goal given with its velocity (x, y, vx, vy), as ``plan`` takes it: the disc is about its position
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, device="cpu")
    planner(np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    planner.k = 15
    assert planner.holding(on_rim)


# ----------------------------------------------------------------------------- warm replans in detail
class RecordingNet(torch.nn.Module):
    """Wraps a denoiser and records the diffusion step of each call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.ts = net, []
        self.horizon_multiple = net.horizon_multiple

    def forward(self, x, t):
        self.ts.append(int(t[0]))
        return self.net(x, t)


def _warm_planner(umaze_data, warm_start=0.25, **kw):
    """A planner (T = 20, H = 16) already following ``_line()`` to the goal (1, 1)."""
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    net = RecordingNet(tiny_unet())
    planner = DiffuserPlanner(net, make_diffusion(20), normalizer, horizon=16, warm_start=warm_start, device="cpu", **kw)
    goal = np.array([1.0, 1.0])
    planner.plan_result, planner.goal = _line(), goal.copy()
    return planner, net, goal


WARM_STATE = np.array([2.4, 1.1, -0.5, 0.1])


def test_a_warm_replan_noises_the_followed_plan_shifted_and_padded_and_keeps_its_arrival(umaze_data, monkeypatch):
    planner, net, goal = _warm_planner(umaze_data, n_samples=2)
    old, seen = planner.plan_result, {}
    q_sample = planner.diffusion.q_sample

    def spy(x0, t, *args, **kwargs):
        seen.update(x0=x0.clone(), t=t.clone())
        return q_sample(x0, t, *args, **kwargs)
    monkeypatch.setattr(planner.diffusion, "q_sample", spy)
    planner.k = planner.t_goal = 5                     # 5 steps in: 10 of the plan's 15 points left
    plan = planner.warm_plan(WARM_STATE, goal)
    assert planner.replan_horizon() == 12
    rows = np.concatenate([old.actions[0], old.observations[0]], -1)
    guess = np.concatenate([rows[5:], rows[15:]])     # shifted by 5 points, padded with the last one
    torch.testing.assert_close(seen["x0"], planner.normalizer.normalize(torch.as_tensor(guess)).expand(2, 12, 6))
    assert seen["t"].tolist() == [4, 4]                # t_w = 0.25 * 20 - 1
    assert net.ts == [4, 3, 2, 1, 0]                   # DDPM from t_w down: t_w + 1 network calls
    assert planner.denoiser_evals == 2 * 5 and planner.n_warm == 1
    np.testing.assert_array_equal(plan.arrival, [10, 10])
    assert plan.chosen == 0
    np.testing.assert_allclose(plan.observations[:, 0], np.broadcast_to(WARM_STATE, (2, 4)), atol=1e-5)
    np.testing.assert_allclose(plan.observations[:, 10], np.broadcast_to([1.0, 1.0, 0.0, 0.0], (2, 4)), atol=1e-5)
    planner.warm_plan(WARM_STATE, goal)
    assert planner.n_warm == 2


def test_a_warm_replan_is_made_up_to_one_point_before_the_arrival_within_the_replan_horizon(umaze_data):
    planner, net, goal = _warm_planner(umaze_data)
    planner.k = planner.t_goal = 14                    # one point left before the arrival
    plan = planner.warm_plan(WARM_STATE, goal)
    assert plan is not None and plan.arrival.tolist() == [1] and plan.observations.shape == (1, 4, 4)
    planner.k = planner.t_goal = 15                    # at the arrival: nothing to warm-start
    assert planner.warm_plan(WARM_STATE, goal) is None
    planner.k, planner.t_goal = 0, 8                   # the goal was set 8 steps ago: the replan spans 8 points
    plan = planner.warm_plan(WARM_STATE, goal)
    assert plan.arrival.tolist() == [7] and plan.observations.shape == (1, 8, 4)
    np.testing.assert_allclose(plan.observations[0, 7], [1.0, 1.0, 0.0, 0.0], atol=1e-5)


def test_a_warm_replan_with_progress_tracking_shifts_by_the_points_reached(umaze_data):
    planner, net, goal = _warm_planner(umaze_data, stride=4, tracking="progress")
    planner.k = planner.t_goal = 8                     # the clock says 2 points ...
    planner.progress = 3                               # ... the ball has reached point 3
    assert planner.warm_plan(WARM_STATE, goal).arrival.tolist() == [12]


def test_a_warm_replan_from_step_zero_and_its_seed(umaze_data):
    planner, net, goal = _warm_planner(umaze_data, warm_start=0.05)    # 0.05 * 20 = 1 step: t_w = 0
    planner.k = planner.t_goal = 5
    planner.warm_plan(WARM_STATE, goal)
    assert net.ts == [0]
    out = []
    for global_seed in (1, 2):                         # the planner's generator alone draws the noise
        planner, net, goal = _warm_planner(umaze_data)
        planner.k = planner.t_goal = 5
        torch.manual_seed(global_seed)
        out.append(planner.warm_plan(WARM_STATE, goal).observations)
    np.testing.assert_array_equal(out[0], out[1])


def test_a_warm_earliest_replan_pins_the_goal_position_runs_its_ddim_share_and_makes_no_search(umaze_data,
                                                                                               monkeypatch):
    planner, net, goal = _warm_planner(umaze_data, arrival="earliest", n_samples=3, ddim_steps=4)
    seen = {}

    def spy(*args, **kwargs):
        seen["conditions"] = args[2]
        return sample_plans(*args, **kwargs)
    monkeypatch.setattr(diffuser_planner, "sample_plans", spy)
    planner.max_speed = np.zeros(2)                    # every plan that moves fails the speed check ...
    planner.k = planner.t_goal = 4
    plan = planner.warm_plan(WARM_STATE, goal)
    assert plan.chosen == 0                            # ... but a warm replan follows its first sample
    assert net.ts == [4] and planner.denoiser_evals == 3 * 1   # 0.25 of 4 DDIM steps, from t_w = 4
    assert sorted(seen["conditions"]) == [0, 11]       # the arrival 15 - 4, in a plan of H points
    pinned = seen["conditions"][11]
    torch.testing.assert_close(pinned[:2], torch.as_tensor(planner.obs_normalizer.normalize(
        np.array([1.0, 1.0, 0.0, 0.0], np.float32)))[:2])
    assert torch.isnan(pinned[2:]).all()               # the position only: the velocity is free


def test_the_planner_takes_an_observation_and_a_goal_of_any_shape_with_4_and_2_entries(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, device="cpu")
    flat = planner(np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0]))
    planner.reset()
    batched = planner(np.array([[3.0, 1.0, 0.0, 0.0]]), np.array([[1.0, 1.0]]))     # a batch of one
    assert batched.shape == (2,)
    np.testing.assert_array_equal(batched, flat)
    planner(np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0]))                   # the same goal, flat
    assert planner.n_plans == 1


def test_state_only_random_conditioning_loss_and_its_seed():
    """``action_dim = 0`` (windows of states only): the random conditions pin whole states, and the noise comes from
    the loss's generator, not from the global RNG."""
    diffusion, x0 = make_diffusion(8), torch.rand(32, 8, 4) * 2 - 1
    zero = diffuser_loss(lambda x, t: torch.zeros_like(x), diffusion, x0, torch.Generator().manual_seed(1),
                         action_dim=0, conditioning="random")
    pinned = torch.zeros_like(x0, dtype=torch.bool)
    for t, value in random_conditions(x0, torch.Generator().manual_seed(1), action_dim=0).items():
        pinned[:, t] = ~torch.isnan(value)
    assert zero.item() == pytest.approx((x0 ** 2 * ~pinned).sum().item() / x0.numel(), rel=1e-5)
    losses = []
    for global_seed in (2, 3):
        torch.manual_seed(global_seed)
        losses.append(diffuser_loss(lambda x, t: x, diffusion, x0, torch.Generator().manual_seed(4), action_dim=0,
                                    conditioning="random").item())
    assert losses[0] == losses[1]


def test_via_points_may_sit_anywhere_strictly_between_start_and_goal(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, ddim_steps=2, device="cpu")
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    plan = planner.plan(state, goal, via={1: (2.9, 1.1), 14: [[1.2, 1.0]]})      # the first and last free index
    np.testing.assert_allclose(plan.observations[0, 1, :2], [2.9, 1.1], atol=1e-5)
    np.testing.assert_allclose(plan.observations[0, 14, :2], [1.2, 1.0], atol=1e-5)
    for k in (0, 15):
        with pytest.raises(ValueError, match=rf"^a via-point is {{k: \(x, y\)}} with 0 < k < 15 \(plan index\), "
                                             rf"got {{{k}: \[3\.0, 3\.0\]}}$"):
            planner.plan(state, goal, via={k: (3.0, 3.0)})


def test_the_planner_follows_its_first_plan_or_the_earliest_feasible_one(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    end = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, n_samples=3, ddim_steps=2,
                          device="cpu")
    end.max_speed = np.zeros(2)                        # no plan would pass a speed check: Diffuser makes none
    assert end.plan(state, goal).chosen == 0
    earliest = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, n_samples=2, ddim_steps=2,
                               arrival="earliest", n_arrivals=16, device="cpu")
    earliest.max_speed = np.full(2, 1e6)               # every plan passes: the earliest is followed
    plan = earliest.plan(state, goal)
    assert plan.arrival[0] == 1 and plan.chosen == 0   # arrival candidates from index 1 on (no via-point)


def test_planner_constructor_names_each_bad_argument_and_keeps_its_settings():
    normalizer = LimitsNormalizer([-1.0, -1.0, 0.0, 0.0, -2.0, -0.5], [1.0, 1.0, 4.0, 4.0, 1.5, 3.0])

    def make(**kw):
        return DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, **{"horizon": 16, "device": "cpu", **kw})

    bad = [(dict(control="torque"), r"control must be 'pd' \(track the planned states\) or 'actions', got 'torque'"),
           (dict(control="actions", stride=2), r"control='actions' needs a plan of every step \(stride 1\), got stride 2"),
           (dict(control="actions", stride=4), r"control='actions' needs a plan of every step \(stride 1\), got stride 4"),
           (dict(arrival="soon"), r"arrival must be 'end' \(Diffuser's\) or 'earliest', got 'soon'"),
           (dict(replan_every=0), r"replan_every must be None \(open loop\) or >= 1, got 0"),
           (dict(stride=0), r"stride, n_samples and n_arrivals must be >= 1, got 0, 1, 8"),
           (dict(n_samples=0), r"stride, n_samples and n_arrivals must be >= 1, got 1, 0, 8"),
           (dict(n_arrivals=0), r"stride, n_samples and n_arrivals must be >= 1, got 1, 1, 0"),
           (dict(lookahead=0), r"lookahead must be >= 1 step, got 0"),
           (dict(warm_start=0.0), r"warm_start must be None or a share of the diffusion in \(0, 1\], got 0\.0"),
           (dict(warm_start=1.01), r"warm_start must be None or a share of the diffusion in \(0, 1\], got 1\.01"),
           (dict(tracking="nearest"), r"tracking must be 'time' \(the plan's clock\) or 'progress' \(the nearest plan "
                                      r"point\), got 'nearest'"),
           (dict(tracking="progress", replan_stalled=0), r"replan_stalled \(steps without progress before a new plan\) "
                                                         r"needs tracking='progress' and >= 1, got 0 with tracking='progress'")]
    for kw, message in bad:
        with pytest.raises(ValueError, match="^" + message + "$"):
            make(**kw)
    with pytest.raises(ValueError, match=r"^normalizer must cover the 6 transition coordinates \[a, o\], got 4$"):
        DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer.sub(2, 6), horizon=16)
    edge = make(replan_every=1, warm_start=1.0, n_samples=1, n_arrivals=1, stride=1, lookahead=1)   # the bounds
    assert (edge.replan_every, edge.warm_start, edge.n_arrivals) == (1, 1.0, 1)
    assert make(tracking="progress", replan_stalled=1).replan_stalled == 1
    default = make()                                                   # Diffuser's maze2d settings
    assert (default.kp, default.kd, default.seed, default.n_samples, default.n_arrivals) == (1.0, 1.0, 0, 1, 8)
    assert (default.speed_slack, default.lookahead, default.stride, default.ddim_steps) == (2.0, 1, 1, None)
    odd = make(horizon=18)                                             # H // 4, an integer number of points
    assert odd.min_replan_horizon == 4 and isinstance(odd.min_replan_horizon, int)
    planner = make(n_samples=3, n_arrivals=5, stride=2, kp=3, kd=0.5, lookahead=2, seed=7)
    assert planner.min_replan_horizon == 4 and make(min_replan_horizon=12).min_replan_horizon == 12   # H // 4
    np.testing.assert_array_equal(planner.max_speed, [2.0, 3.0])      # the largest |velocity| per axis in the data
    assert (planner.n_samples, planner.n_arrivals, planner.stride, planner.lookahead) == (3, 5, 2, 2)
    assert (planner.kp, planner.kd, planner.control, planner.arrival, planner.tracking) == (3.0, 0.5, "pd", "end", "time")
    assert (planner.replan_every, planner.warm_start, planner.replan_stalled, planner.via) == (None, None, None, None)
    assert planner.denoiser_evals == 0 and planner.n_plans == 0 and planner.plan_result is None
    state, goal = np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 3.0])
    first = planner.plan(state, goal).observations
    np.testing.assert_array_equal(make(n_samples=3, n_arrivals=5, stride=2, seed=7).plan(state, goal).observations,
                                  first)                                # the seed fixes the plans
    assert not np.array_equal(make(n_samples=3, n_arrivals=5, stride=2, seed=8).plan(state, goal).observations, first)


def test_reset_forgets_the_plan_and_reseeds_and_requests_are_checked(umaze_data):
    normalizer = LimitsNormalizer.fit(make_transitions(umaze_data))
    planner = DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, ddim_steps=2, replan_every=2,
                              seed=3, device="cpu")
    state, goal = np.array([3.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    for _ in range(3):
        planner(state, goal)
    assert planner.n_plans == 2 and planner.k == 1 and planner.t_goal == 3 and planner.denoiser_evals == 4
    planner.progress, planner.stalled, planner.n_warm, planner.n_stalled = 2, 1, 1, 1
    planner.reset()
    assert planner.plan_result is None and planner.goal is None
    assert (planner.k, planner.progress, planner.stalled, planner.t_goal) == (0, 0, 0, 0)
    assert (planner.n_plans, planner.n_warm, planner.n_stalled, planner.denoiser_evals) == (0, 0, 0, 4)
    seeded = lambda seed: DiffuserPlanner(tiny_unet(), make_diffusion(4), normalizer, horizon=16, ddim_steps=2,
                                          seed=seed, device="cpu").plan(state, goal).observations
    np.testing.assert_array_equal(planner.plan(state, goal).observations, seeded(3))   # the constructor's seed
    planner.reset(seed=5)
    np.testing.assert_array_equal(planner.plan(state, goal).observations, seeded(5))
    np.testing.assert_array_equal(planner.plan(state[None], goal[None]).arrival, [15])   # a batch of one each
    moving = np.array([1.0, 1.0, 0.5, -0.5])                                            # a goal with its velocity
    np.testing.assert_allclose(planner.plan(state, moving).observations[0, -1], moving, atol=1e-5)
    with pytest.raises(ValueError, match=r"^state must be \(x, y, vx, vy\) and goal \(x, y\) or \(x, y, vx, vy\), "
                                         r"got shapes \(4,\) and \(3,\)$"):
        planner.plan(state, np.zeros(3))
    with pytest.raises(ValueError, match=r"got shapes \(2,\) and \(2,\)$"):
        planner.plan(np.zeros(2), goal)


def test_apply_conditioning_takes_every_index_from_minus_h_and_names_bad_shapes():
    x, goal = torch.zeros(2, 8, 6), torch.ones(4)
    assert torch.equal(apply_conditioning(x, {-8: goal})[:, 0, 2:], goal.expand(2, 4))     # -H is index 0
    with pytest.raises(ValueError, match=r"^condition time index -9 lies outside the horizon H = 8; use 0 \.\. 7$"):
        apply_conditioning(x, {-9: goal})
    with pytest.raises(ValueError, match=r"^x must have shape \(B, H, D\), got \(8, 6\)$"):
        apply_conditioning(torch.zeros(8, 6), {0: goal})
