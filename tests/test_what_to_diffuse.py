"""What is diffused: states only + inverse dynamics (Decision Diffuser), actions only (Diffusion Policy)."""

import dataclasses

import numpy as np
import pytest
import torch

from tutorial_lib.agents.diffuser import make_diffusion
from tutorial_lib.agents.goal_windows import GoalSegments
from tutorial_lib.agents.inverse_dynamics import InverseDynamics, inverse_dynamics_loss, InverseDynamicsConfig, \
    transition_rows
from tutorial_lib.agents.maze_action_policy import MazeActionPolicyConfig, MazeDiffusionPolicy, build_action_net, \
    load_action_policy
from tutorial_lib.agents.state_diffuser import StateDiffuserConfig, StatePlanner, build_state_net, \
    load_state_planner, state_cfg_loss
from tutorial_lib.agents.trajectories import LimitsNormalizer
from tutorial_lib.core.recipes import get_recipe, train_recipe
from tutorial_lib.envs.maze import point_mass_step
from tutorial_lib.envs.maze_expert import WaypointController
from tutorial_lib.envs.maze_grid import MazeGrid
from tutorial_lib.experiments.literature_what_to_diffuse import AGENTS, what_to_diffuse

STATE_RANGE = (np.array([0.0, 0.0, -5.0, -5.0]), np.array([4.0, 5.0, 5.0, 5.0]))


def _stream():
    """A 12-step stream with two goal segments [0, 5) and [5, 12); observation t is (t, 10 t, t, -t)."""
    t = np.arange(12, dtype=np.float32)
    obs = np.stack([t, 10 * t, t, -t], axis=1)
    actions = np.stack([t / 12, -t / 12], axis=1)
    goals = np.where(t[:, None] < 5, [4.0, 40.0], [11.0, 110.0]).astype(np.float32)
    return GoalSegments(obs, actions, goals, [[0, 5], [5, 12]])


def test_goal_windows_hold_at_the_arrival():
    seg = _stream()
    t = torch.tensor([1, 6])
    x = seg.obs_normalizer.unnormalize(seg.state_windows(t, horizon=4, stride=2))            # (2, 4, 4)
    assert x.shape == (2, 4, 4)
    # from t = 1: o_1, o_3, then the arrival o_4 at rest twice
    assert torch.allclose(x[0, :, 0], torch.tensor([1.0, 3.0, 4.0, 4.0]))
    assert torch.allclose(x[0, 2:, 2:], torch.zeros(2, 2), atol=1e-6)
    assert torch.allclose(x[0, :2, 2], torch.tensor([1.0, 3.0]))
    assert torch.allclose(x[1, :, 0], torch.tensor([6.0, 8.0, 10.0, 11.0]))
    a = seg.action_normalizer.unnormalize(seg.action_chunks(torch.tensor([0, 3]), n_obs_steps=2, horizon=4))
    assert a.shape == (2, 4, 2)
    assert torch.allclose(a[1, :, 0], torch.tensor([2 / 12, 3 / 12, 4 / 12, 0.0]), atol=1e-6)   # a_2 .. a_4, then 0
    assert torch.allclose(a[0, :2, 0], torch.tensor([0.0, 0.0]), atol=1e-6)                   # a_{-1} clamped to a_0
    h = seg.obs_normalizer.unnormalize(seg.obs_history(torch.tensor([0, 7]), 2))
    assert torch.allclose(h[:, :, 0], torch.tensor([[0.0, 0.0], [6.0, 7.0]]))
    assert torch.allclose(seg.goal_normalizer.unnormalize(seg.goals[[4, 5]]), torch.tensor([[4.0, 40.0], [11.0, 110.0]]))


def test_goal_windows_reject_segments_with_gaps():
    obs, act = np.zeros((6, 4)), np.zeros((6, 2))
    with pytest.raises(ValueError, match="cover the stream"):
        GoalSegments(obs, act, act, [[0, 2], [3, 6]])


def test_network_shapes():
    cfg = StateDiffuserConfig()
    net = build_state_net(cfg)
    assert net(torch.zeros(3, 32, 4), torch.zeros(3, dtype=torch.long), torch.zeros(3, 3)).shape == (3, 32, 4)
    acfg = MazeActionPolicyConfig()
    anet = build_action_net(acfg)
    assert acfg.cond_dim == 10
    assert anet(torch.zeros(3, 16, 2), torch.zeros(3, dtype=torch.long), torch.zeros(3, 10)).shape == (3, 16, 2)
    f = InverseDynamics(*STATE_RANGE, hidden=32, depth=2)
    out = f(torch.zeros(5, 4), torch.ones(5, 4))
    assert out.shape == (5, 2) and out.abs().max() < 1


def test_inverse_dynamics_recovers_the_true_actions():
    # stride 1 in free space: a = (v' - d v) / (dt c) exactly, so a small MLP must learn it
    rng = np.random.default_rng(0)
    walls = ((False,) * 6,) * 6
    n = 6000
    s = np.concatenate([rng.uniform(1.5, 3.5, (n, 2)), rng.uniform(-2, 2, (n, 2))], axis=1)
    a = rng.uniform(-0.9, 0.9, (n, 2))
    s_next = np.array([sum(point_mass_step(walls, tuple(p[:2]), tuple(p[2:]), tuple(u)), ()) for p, u in zip(s, a)])
    rows = torch.tensor(np.concatenate([s, s_next, a], axis=1), dtype=torch.float32)
    train, test = rows[:5000], rows[5000:]
    torch.manual_seed(0)
    model = InverseDynamics(*STATE_RANGE, hidden=64, depth=2)
    loss_fn = inverse_dynamics_loss(InverseDynamicsConfig(stride=1))

    def error():
        with torch.no_grad():
            return (model(test[:, :4], test[:, 4:8]) - test[:, 8:]).abs().mean().item()

    before = error()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        loss = loss_fn(model, train[torch.randint(0, len(train), (256,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < 0.05 < before


def test_transition_rows_pair_states_stride_apart():
    obs = np.arange(40, dtype=np.float32).reshape(10, 4)
    act = np.arange(20, dtype=np.float32).reshape(10, 2)
    rows = transition_rows(obs, act, stride=3)
    assert rows.shape == (7, 10)
    assert torch.equal(rows[2, 4:8], torch.tensor(obs[5])) and torch.equal(rows[2, 8:], torch.tensor(act[2]))
    with pytest.raises(ValueError, match="stride"):
        transition_rows(obs, act, stride=0)


class _Spy(torch.nn.Module):
    """Wraps a denoiser and records the batch size and keep flags of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, c):
        self.calls.append((x.shape[0], c[:, -1].tolist()))
        return self.net(x, t, c)


def test_cfg_loss_drops_the_goal_and_pins_the_start():
    torch.manual_seed(0)
    spy = _Spy(build_state_net(StateDiffuserConfig()))
    diffusion = make_diffusion(64)
    x0, goal = torch.rand(8, 32, 4) * 2 - 1, torch.rand(8, 2) * 2 - 1
    g = torch.Generator().manual_seed(0)
    state_cfg_loss(spy, diffusion, x0, goal, 0.999, g)
    state_cfg_loss(spy, diffusion, x0, goal, 0.001, g)
    assert spy.calls[0][1] == [0.0] * 8 and spy.calls[1][1] == [1.0] * 8
    with pytest.raises(ValueError, match="goal"):
        state_cfg_loss(spy, diffusion, x0, goal[:, :1], 0.2, g)


def _planner(weight, **kwargs):
    torch.manual_seed(0)
    cfg = StateDiffuserConfig()
    normalizer = LimitsNormalizer(*STATE_RANGE)
    return StatePlanner(_Spy(build_state_net(cfg)), make_diffusion(64), normalizer,
                        InverseDynamics(*STATE_RANGE, hidden=16, depth=1), cfg.horizon, cfg.stride, weight=weight,
                        ddim_steps=4, device="cpu", **kwargs)


def test_state_planner_guides_by_the_goal_and_inpaints_the_start():
    state = np.array([1.0, 1.0, 0.5, -0.5], np.float32)
    free = _planner(0.0)
    plans = [free.plan(state, g) for g in ([1.0, 3.0], [3.0, 1.0]) for _ in [free.reset()]]
    assert np.allclose(plans[0], plans[1])                      # w = 0: the goal is ignored
    guided = _planner(2.0)
    plans = [guided.plan(state, g) for g in ([1.0, 3.0], [3.0, 1.0]) for _ in [guided.reset()]]
    assert not np.allclose(plans[0], plans[1])
    assert np.allclose(plans[0][0], state, atol=1e-5)           # the current state is pinned
    assert plans[0].shape == (32, 4)
    assert guided.model.calls[-1] == (2, [1.0, 0.0])            # conditional and null rows in one batch
    action = guided(state, np.array([1.0, 3.0]))
    assert action.shape == (2,) and action.dtype == np.float32 and np.abs(action).max() <= 1


def test_state_planner_rejects_bad_input():
    planner = _planner(2.0)
    with pytest.raises(ValueError, match="goal"):
        planner.plan(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        planner.plan(np.array([np.nan, 0, 0, 0]), np.zeros(2))
    with pytest.raises(ValueError, match="stride=4"):
        _planner(2.0, id_stride=1)


def test_action_policy_queries_every_ta_steps_and_checks_input():
    torch.manual_seed(0)
    cfg = MazeActionPolicyConfig(ddim_steps=2)
    norm = LimitsNormalizer(*STATE_RANGE)
    policy = MazeDiffusionPolicy(build_action_net(cfg), cfg, norm, LimitsNormalizer([-1, -1], [1, 1]), device="cpu")
    calls = []
    predict = policy.predict_chunk
    policy.predict_chunk = lambda o, g: calls.append(np.array(o)) or predict(o, g)
    for k in range(17):
        a = policy(np.array([1.0, 1.0, 0.0, float(k)]), np.array([3.0, 1.0]))
    assert len(calls) == 3 and a.shape == (2,)
    assert np.allclose(calls[0][:, 3], [0.0, 0.0]) and np.allclose(calls[1][:, 3], [7.0, 8.0])   # To = 2 history
    with pytest.raises(ValueError, match="last 2 observations"):
        predict(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="n_action_steps"):
        MazeDiffusionPolicy(build_action_net(cfg), cfg, norm, norm.sub(0, 2), n_action_steps=16)
    with pytest.raises(ValueError, match="must fit"):
        MazeActionPolicyConfig(n_action_steps=16)


@pytest.mark.parametrize("name", ["maze-umaze-states", "maze-umaze-inverse-dynamics", "maze-umaze-action-policy"])
def test_recipes_train_and_load(name, tmp_path):
    recipe = get_recipe(name)
    small = dict(n_transitions=100_000, n_steps=3, batch_size=8)
    cfg = recipe.config(**small)
    path = tmp_path / "model.pt"
    result = train_recipe(name, cfg, checkpoint_path=path, device="cpu", progress=False)
    assert result.step == 3 and np.isfinite(result.history["loss"]).all()
    if name == "maze-umaze-action-policy":
        policy = load_action_policy(path=path, device="cpu", ddim_steps=2)
        assert policy(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 1.0])).shape == (2,)


def test_state_recipe_loads_as_a_planner(tmp_path):
    cfg = get_recipe("maze-umaze-states").config(n_transitions=100_000, n_steps=2, batch_size=4)
    train_recipe("maze-umaze-states", cfg, checkpoint_path=tmp_path / "s.pt", device="cpu", progress=False)
    icfg = get_recipe("maze-umaze-inverse-dynamics").config(n_transitions=100_000, n_steps=2, batch_size=4)
    train_recipe("maze-umaze-inverse-dynamics", icfg, checkpoint_path=tmp_path / "i.pt", device="cpu", progress=False)
    planner = load_state_planner(path=tmp_path / "s.pt", inverse_path=tmp_path / "i.pt", device="cpu", ddim_steps=2)
    assert planner.plan(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 1.0])).shape == (32, 4)


class _ExpertPlanner(WaypointController):
    """The data's expert, given a ``plan`` method so that it can be timed like the agents."""

    def plan(self, position, goal):
        return super().plan(np.asarray(position)[:2], goal)


def test_evaluation_reports_each_agent_with_intervals():
    agents = {name: _ExpertPlanner(MazeGrid.from_layout("umaze"), seed=0) for name in AGENTS}
    out = what_to_diffuse(agents, quick=True)
    for name in AGENTS:
        entry = out[name]
        assert entry["n_episodes"] == 2 and entry["success"] == 1.0
        assert entry["normalized_score"] == pytest.approx(100.0, abs=1e-6)   # the expert is the score's 100
        assert set(entry["ci95"]) >= {"success", "normalized_score", "d4rl_normalized_score"}
        assert entry["decision_ms"] >= 0 and entry["step_ms"] >= 0
    with pytest.raises(ValueError, match="missing"):
        what_to_diffuse({"action": agents["action"]}, quick=True)


def test_configs_reject_bad_settings():
    with pytest.raises(ValueError, match="p_uncond"):
        StateDiffuserConfig(p_uncond=0.0)
    with pytest.raises(ValueError, match="multiple of 4"):
        StateDiffuserConfig(horizon=30)
    with pytest.raises(ValueError, match="stride"):
        InverseDynamicsConfig(stride=0)
    assert dataclasses.asdict(StateDiffuserConfig())["widths"] == (16, 64, 128)
