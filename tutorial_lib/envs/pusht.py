"""Push-T: push a T-shaped block onto a goal pose with a round pusher (Chi et al. 2023).

The task of Diffusion Policy's state-based benchmark, rebuilt on pymunk 7. A kinematic
disc (the agent) follows a commanded target position through a PD law and pushes a T block
on a frictionless table (no gravity, space damping 0, so the block stops as soon as it is
no longer pushed). The goal is reached when the block covers more than 95 % of the goal T.

Coordinates are pixels of a 512 x 512 workspace, y pointing down (as in the rendered image).
The block's pose (x, y, theta) is the pose of its body frame, whose origin is the middle of
the outer edge of the T's bar; in that frame the bar spans [-60, 60] x [0, 30] and the stem
[-15, 15] x [30, 120].

Physics constants and their sources (real-stanford/diffusion_policy ``pusht_env.py``):
    - simulation 100 Hz, control 10 Hz (10 physics steps per env step);
    - agent: kinematic circle of radius 15, velocity update each physics step
      ``v <- v + (k_p (target - x) - k_v v) dt`` with k_p = 100, k_v = 20;
    - block: mass 1, moment of inertia 2 * moment_for_poly(1, bar) = 3000 (the reference
      adds the bar's moment twice), centre of gravity (0, 45) in the body frame (the mean
      of the bar's and the stem's centroids, as in the reference);
    - space damping 0 (the reference's default): each step multiplies velocities by
      0 ** dt = 0 before contact impulses, i.e. quasi-static pushing;
    - walls: inner faces at 7 and 504 on both axes (reference: segments at 5 and 506 of
      radius 2);
    - friction: the reference writes ``friction = 1`` on the bodies, an attribute that
      pymunk ignores (friction belongs to shapes, default 0), so its contacts are
      frictionless. ``contact_friction=0.0`` reproduces that; pass 1.0 for the intended value.

Differences from the reference:
    - the walls are 50 px thick boxes (same inner faces), so a block squeezed against a
      wall is pushed back in more often than through: with random targets, half of them on
      the border, the T pokes out of the walls in 7 % of the steps instead of 17 %. The
      agent is kinematic (infinitely strong, not stopped by walls) and may be commanded up
      to the border, so it can still crush the block through a wall, as in the reference;
    - every env step rebuilds the pymunk space from the full state (positions and
      velocities), so contact caches do not carry over between env steps. The state vector
      is then complete, a step is a pure function ``simulate(state, target)``, and
      snapshots restore exactly. (With one pusher the contact solver converges within a
      step: two 5-substep calls equal one 10-substep call. With damping 0 the block's
      velocity at a step boundary has no influence on what follows.);
    - ``reset`` (the book's protocol, ``reset_protocol="book"``) sets the state exactly (the
      reference runs one physics step after setting it), draws the angle uniformly (the
      reference: N(0, (2 pi)^2) - pi, nearly uniform modulo 2 pi) and redraws blocks sticking
      into a wall and agents overlapping the block. ``reset_protocol="reference"`` draws the
      reference's start distribution instead (see ``reference_start_state``), so that scores
      can be put beside the paper's;
    - 9 fixed keypoints (see ``pusht_geometry``) instead of farthest-point samples of a
      rendered T; rendering with numpy instead of pygame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pymunk
from gymnasium import spaces

from tutorial_lib.envs.pusht_geometry import (
    BAR_VERTICES,
    BLOCK_KEYPOINTS_LOCAL,
    STEM_VERTICES,
    block_keypoints,
    coverage,
    tee_polygons,
)
from tutorial_lib.envs.pusht_render import render_scene

WORKSPACE_SIZE = 512.0
WALL_INNER = (7.0, 504.0)  # inner faces of the walls, both axes
WALL_THICKNESS = 50.0
AGENT_RADIUS = 15.0
K_P, K_V = 100.0, 20.0
SIM_HZ, CONTROL_HZ = 100, 10
N_SUBSTEPS = SIM_HZ // CONTROL_HZ
BLOCK_MASS = 1.0
BLOCK_COG = (0.0, 45.0)
GOAL_POSE = np.array([256.0, 256.0, math.pi / 4])
SUCCESS_THRESHOLD = 0.95
MAX_EPISODE_STEPS = 300
AGENT_RESET_RANGE = (50, 450)  # integers in [50, 450), as the reference's randint
BLOCK_RESET_RANGE = (100, 400)
RESET_PROTOCOLS = ("book", "reference")   # PushTEnv(reset_protocol=...): see PushTEnv and reference_start_state

# indices into the simulation state, sim_state: (10,) float64
AGENT_POS, AGENT_VEL = slice(0, 2), slice(2, 4)
BLOCK_POS, BLOCK_ANGLE, BLOCK_VEL, BLOCK_ANG_VEL = slice(4, 6), 6, slice(7, 9), 9
SIM_STATE_DIM = 10


def _build_space(sim_state: np.ndarray, contact_friction: float):
    """Build a pymunk space holding the walls, the agent and the block at ``sim_state``.

    sim_state: (10,) [agent x, y, vx, vy, block x, y, theta, vx, vy, omega].
    Returns (space, agent_body, block_body).
    """
    space = pymunk.Space()
    space.gravity = (0.0, 0.0)
    space.damping = 0.0
    lo, hi, t = WALL_INNER[0], WALL_INNER[1], WALL_THICKNESS
    for x0, y0, x1, y1 in ((lo - t, lo - t, lo, hi + t), (hi, lo - t, hi + t, hi + t),
                           (lo - t, lo - t, hi + t, lo), (lo - t, hi, hi + t, hi + t)):
        wall = pymunk.Poly(space.static_body, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        wall.friction = contact_friction
        space.add(wall)

    agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
    agent_shape = pymunk.Circle(agent, AGENT_RADIUS)
    agent_shape.friction = contact_friction
    agent.position = tuple(sim_state[AGENT_POS])
    agent.velocity = tuple(sim_state[AGENT_VEL])
    space.add(agent, agent_shape)

    block = pymunk.Body(BLOCK_MASS, 2.0 * pymunk.moment_for_poly(BLOCK_MASS, BAR_VERTICES))
    shapes = [pymunk.Poly(block, BAR_VERTICES), pymunk.Poly(block, STEM_VERTICES)]
    for shape in shapes:
        shape.friction = contact_friction
    block.center_of_gravity = BLOCK_COG
    # the angle first: setting it rotates about the centre of gravity
    block.angle = float(sim_state[BLOCK_ANGLE])
    block.position = tuple(sim_state[BLOCK_POS])
    block.velocity = tuple(sim_state[BLOCK_VEL])
    block.angular_velocity = float(sim_state[BLOCK_ANG_VEL])
    space.add(block, *shapes)
    return space, agent, block


def simulate(sim_state: np.ndarray, target: np.ndarray, contact_friction: float = 0.0,
             n_substeps: int = N_SUBSTEPS) -> np.ndarray:
    """Advance the simulation by one env step with the agent driven towards ``target``.

    Each of the ``n_substeps`` physics steps (dt = 1 / 100 s) first sets the agent velocity
        v <- v + (k_p (target - x) - k_v v) dt,    k_p = 100, k_v = 20,
    then steps pymunk. No clipping or validation happens here (see ``PushTEnv.step``).

    sim_state: (10,) float64, target: (2,) float64 -> new sim_state: (10,) float64.
    """
    space, agent, block = _build_space(sim_state, contact_friction)
    dt = 1.0 / SIM_HZ
    tx, ty = float(target[0]), float(target[1])
    for _ in range(n_substeps):
        (px, py), (vx, vy) = agent.position, agent.velocity
        agent.velocity = (vx + (K_P * (tx - px) - K_V * vx) * dt,
                          vy + (K_P * (ty - py) - K_V * vy) * dt)
        space.step(dt)
    return np.array([*agent.position, *agent.velocity, *block.position, block.angle,
                     *block.velocity, block.angular_velocity], dtype=np.float64)


def reference_start_state(rng: np.random.Generator, contact_friction: float = 0.0) -> np.ndarray:
    """A start state drawn as the reference environment draws it (``gym-pusht``, ``legacy``).

    The agent is placed first, in [50, 450)^2 (integers); the block's *position* is set to a
    point of [100, 400)^2 (integers) while its angle is 0, and only then its angle
    ``theta ~ N(0, (2 pi)^2) - pi``. pymunk turns a body about its centre of gravity, (0, 45) in
    the body frame, so the body's origin ends at ``(bx + 45 sin theta, by + 45 - 45 cos theta)``:
    45 px lower on average than the drawn point. No start is rejected (a block may stick into a
    wall, the agent may overlap it), and one physics step (1/100 s, the agent at rest) runs before
    the first observation, as the reference does, pushing overlapping bodies apart.

    rng: the env's generator. Returns the simulation state (10,) float64 after that step.
    """
    agent = rng.integers(*AGENT_RESET_RANGE, size=2).astype(np.float64)
    block = rng.integers(*BLOCK_RESET_RANGE, size=2).astype(np.float64)
    theta = rng.normal() * 2 * math.pi - math.pi
    cx, cy = BLOCK_COG
    # origin = p_cog - R(theta) cog, with p_cog = block + R(0) cog fixed by the rotation
    origin = (block[0] + cx - (cx * math.cos(theta) - cy * math.sin(theta)),
              block[1] + cy - (cx * math.sin(theta) + cy * math.cos(theta)))
    sim_state = np.zeros(SIM_STATE_DIM)
    sim_state[AGENT_POS], sim_state[BLOCK_POS], sim_state[BLOCK_ANGLE] = agent, origin, theta
    return simulate(sim_state, agent, contact_friction, n_substeps=1)


def make_sim_state(state) -> np.ndarray:
    """Check a user state [agent x, agent y, block x, block y, block angle] and return the
    simulation state (10,) float64 with all velocities zero.

    Positions must be finite and lie in the workspace [0, 512]; the angle any finite number.
    """
    try:
        state = np.asarray(state, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"state must be 5 numbers [agent_x, agent_y, block_x, block_y, "
                         f"block_angle]; got {state!r}") from err
    if state.shape != (5,):
        raise ValueError(f"state must have shape (5,) [agent_x, agent_y, block_x, block_y, "
                         f"block_angle]; got shape {state.shape}")
    if not np.all(np.isfinite(state)):
        raise ValueError(f"state must be finite; got {state.tolist()}")
    if np.any(state[:4] < 0.0) or np.any(state[:4] > WORKSPACE_SIZE):
        raise ValueError(f"agent and block positions must lie in [0, {WORKSPACE_SIZE:g}]; "
                         f"got agent {state[:2].tolist()}, block {state[2:4].tolist()}")
    sim_state = np.zeros(SIM_STATE_DIM)
    sim_state[AGENT_POS] = state[:2]
    sim_state[BLOCK_POS] = state[2:4]
    sim_state[BLOCK_ANGLE] = state[4]
    return sim_state


@dataclass(frozen=True)
class PushTSnapshot:
    """Everything ``PushTEnv`` needs to resume an episode exactly.

    sim_state: (10,) float64 (see ``simulate``); elapsed_steps: env steps taken;
    last_action: (2,) float64 or None, the last clipped target (for rendering).
    """

    sim_state: np.ndarray
    elapsed_steps: int
    last_action: np.ndarray | None


class PushTEnv(gym.Env):
    """Push a T block onto the goal pose (256, 256, pi/4) with a PD-driven disc.

    Observation (``obs_type="state"``): obs: (5,) float32
        [agent_x, agent_y, block_x, block_y, block_angle mod 2 pi].
    Positions stay in [0, 512] unless the agent crushes the block through a wall.
    Observation (``obs_type="keypoints"``): obs: (20,) float32, the 9 block keypoints of
        ``BLOCK_KEYPOINTS_LOCAL`` in world coordinates (18 numbers, x then y for each),
        followed by [agent_x, agent_y] (the reference's order: keypoints, then agent).
    Action: (2,) the target position of the agent, clipped to [0, 512]^2.
    Reward: clip(coverage / 0.95, 0, 1) with coverage = area(block ∩ goal) / area(goal).
    Terminated when coverage > 0.95; truncated after 300 steps.
    Reset: agent in [50, 450)^2 and block in [100, 400)^2 (integers, as the reference),
        angle uniform in [-pi, pi); blocks sticking into a wall and agents overlapping the
        block are redrawn (the reference keeps them and lets a first physics step push
        them apart), so every episode starts at rest with the whole T inside the walls.
        ``reset_protocol="reference"``: the reference's start distribution instead
        (``reference_start_state``: block position set before its angle, no start rejected,
        one physics step first), for scores comparable with the paper's.
        ``reset(options={"state": [ax, ay, bx, by, angle]})`` sets a state exactly.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, obs_type: str = "state", render_mode: str | None = None,
                 render_size: int = 256, render_action: bool = True,
                 contact_friction: float = 0.0, max_episode_steps: int = MAX_EPISODE_STEPS,
                 reset_protocol: str = "book"):
        if reset_protocol not in RESET_PROTOCOLS:
            raise ValueError(f"reset_protocol must be one of {RESET_PROTOCOLS}; got {reset_protocol!r}")
        self.reset_protocol = reset_protocol
        if obs_type not in ("state", "keypoints"):
            raise ValueError(f"obs_type must be 'state' or 'keypoints'; got {obs_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        if contact_friction < 0:
            raise ValueError(f"contact_friction must be >= 0; got {contact_friction}")
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.render_action = render_action
        self.contact_friction = float(contact_friction)
        self.max_episode_steps = int(max_episode_steps)
        self.goal_pose = GOAL_POSE.copy()
        self.action_space = spaces.Box(0.0, WORKSPACE_SIZE, shape=(2,), dtype=np.float32)
        if obs_type == "state":
            high = np.array([WORKSPACE_SIZE] * 4 + [2 * math.pi], dtype=np.float32)
            self.observation_space = spaces.Box(np.zeros(5, np.float32), high, dtype=np.float32)
        else:
            n = 2 * len(BLOCK_KEYPOINTS_LOCAL) + 2
            self.observation_space = spaces.Box(0.0, WORKSPACE_SIZE, shape=(n,), dtype=np.float32)
        self._sim_state = make_sim_state([256, 400, 256, 300, 0])
        self._elapsed_steps = 0
        self._last_action = None

    # ----------------------------------------------------------------- state access
    @property
    def agent_position(self) -> np.ndarray:
        """(2,) float64 agent position."""
        return self._sim_state[AGENT_POS].copy()

    @property
    def block_pose(self) -> np.ndarray:
        """(3,) float64 block pose (x, y, theta), theta not wrapped."""
        return np.append(self._sim_state[BLOCK_POS], self._sim_state[BLOCK_ANGLE])

    @property
    def sim_state(self) -> np.ndarray:
        """(10,) float64 copy of the full simulation state (see ``simulate``)."""
        return self._sim_state.copy()

    def coverage(self) -> float:
        """area(block ∩ goal) / area(goal) for the current block pose."""
        return coverage(self.block_pose, self.goal_pose)

    def snapshot(self) -> PushTSnapshot:
        """Save the simulation state, the step count and the last action."""
        last = None if self._last_action is None else self._last_action.copy()
        return PushTSnapshot(self._sim_state.copy(), self._elapsed_steps, last)

    def restore(self, snapshot: PushTSnapshot) -> None:
        """Resume from ``snapshot``; later steps repeat the original ones exactly."""
        if not isinstance(snapshot, PushTSnapshot):
            raise TypeError(f"restore expects a PushTSnapshot from env.snapshot(); "
                            f"got {type(snapshot).__name__}")
        self._sim_state = np.array(snapshot.sim_state, dtype=np.float64)
        self._elapsed_steps = snapshot.elapsed_steps
        self._last_action = None if snapshot.last_action is None else snapshot.last_action.copy()

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"state"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'state'")
        if options.get("state") is not None:
            self._sim_state = make_sim_state(options["state"])
        elif self.reset_protocol == "reference":
            self._sim_state = reference_start_state(self.np_random, self.contact_friction)
        else:
            self._sim_state = self._sample_sim_state()
        self._elapsed_steps = 0
        self._last_action = None
        return self._get_obs(), self._get_info()

    def step(self, action):
        target = self._check_action(action)
        self._last_action = target
        self._sim_state = simulate(self._sim_state, target, self.contact_friction)
        self._elapsed_steps += 1
        cov = self.coverage()
        reward = float(np.clip(cov / SUCCESS_THRESHOLD, 0.0, 1.0))
        terminated = bool(cov > SUCCESS_THRESHOLD)
        truncated = bool(self._elapsed_steps >= self.max_episode_steps and not terminated)
        return self._get_obs(), reward, terminated, truncated, self._get_info(cov)

    def render(self):
        if self.render_mode != "rgb_array":
            raise ValueError("render() needs PushTEnv(render_mode='rgb_array')")
        action = self._last_action if self.render_action else None
        return render_scene(self.block_pose, self.agent_position, self.goal_pose,
                            action=action, size=self.render_size)

    # ----------------------------------------------------------------- helpers
    def _sample_sim_state(self) -> np.ndarray:
        rng = self.np_random
        while True:  # redraw blocks that would stick into a wall
            block = rng.integers(*BLOCK_RESET_RANGE, size=2)
            angle = rng.uniform(-math.pi, math.pi)
            pose = np.array([block[0], block[1], angle], dtype=np.float64)
            polys = tee_polygons(pose)
            if polys.min() >= WALL_INNER[0] and polys.max() <= WALL_INNER[1]:
                break
        while True:  # redraw agents that would start inside the block
            agent = rng.integers(*AGENT_RESET_RANGE, size=2).astype(np.float64)
            if distance_to_block(agent, pose) > AGENT_RADIUS:
                return make_sim_state([agent[0], agent[1], *pose])

    @staticmethod
    def _check_action(action) -> np.ndarray:
        try:
            target = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"action must be a target position [x, y]; got {action!r}") from err
        if target.shape != (2,):
            raise ValueError(f"action must have shape (2,) (target x, y in [0, 512]); "
                             f"got shape {target.shape}")
        if not np.all(np.isfinite(target)):
            raise ValueError(f"action must be finite; got {target.tolist()}")
        return np.clip(target, 0.0, WORKSPACE_SIZE)

    def _get_obs(self) -> np.ndarray:
        agent = self._sim_state[AGENT_POS]
        if self.obs_type == "state":
            angle = self._sim_state[BLOCK_ANGLE] % (2 * math.pi)
            return np.array([*agent, *self._sim_state[BLOCK_POS], angle], dtype=np.float32)
        keypoints = block_keypoints(self.block_pose)
        return np.concatenate([keypoints.ravel(), agent]).astype(np.float32)

    def _get_info(self, cov: float | None = None) -> dict:
        cov = self.coverage() if cov is None else cov
        return {"coverage": cov, "is_success": cov > SUCCESS_THRESHOLD,
                "block_pose": self.block_pose, "goal_pose": self.goal_pose.copy(),
                "agent_velocity": self._sim_state[AGENT_VEL].copy()}


def distance_to_block(point: np.ndarray, block_pose: np.ndarray) -> float:
    """Euclidean distance from ``point`` (2,) to the T at ``block_pose`` (3,); 0 inside."""
    return float(min(_distance_to_convex(point, poly) for poly in tee_polygons(block_pose)))


def _distance_to_convex(point: np.ndarray, poly: np.ndarray) -> float:
    """Distance from ``point`` (2,) to the convex polygon ``poly`` (N, 2) (CCW); 0 inside."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab, ap = b - a, point - a
    if np.all(ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0] >= 0):
        return 0.0
    t = np.clip(np.sum(ap * ab, axis=1) / np.sum(ab * ab, axis=1), 0.0, 1.0)
    return float(np.min(np.linalg.norm(ap - t[:, None] * ab, axis=1)))
