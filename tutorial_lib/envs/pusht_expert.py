"""A scripted Push-T expert: choose push primitives by simulating them on the exact model.

Each decision samples candidate push primitives and simulates each one, action by action,
with ``simulate`` (the env's own deterministic step), then executes the best:

    J(primitive) = e_kp(block pose after it) + lam * n_steps + noise,
    e_kp(pose)   = mean_k || kp_k(pose) - kp_k(goal) ||  over the 9 block keypoints,

so pose error couples position and angle without a hand-set weight (the keypoints span
120 px). A primitive that reaches coverage > 0.95 on the way wins outright (the episode
ends there), the shortest first. A primitive is:
    1. approach: a contact point c on the T's outline (body frame, with outward normal n)
       gives a start point p0 = c + n (r + gap); the agent goes there along waypoints on a
       ring around the T when the straight way is blocked;
    2. push: ``hold`` env steps with the target p0 - n (r + gap + depth);
    3. retreat: one step with the target p0 + n * 5, so the block comes to rest.
Candidate contacts are jittered along every outward edge of the T and the scores get a
little noise, so symmetric situations are pushed from either side: the demonstrations are
multimodal, as human ones are.

Because the candidates are simulated with the env's own step, the executed primitive
reproduces the simulated one exactly; the plan is recomputed after every primitive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tutorial_lib.envs.pusht import (
    AGENT_POS,
    AGENT_RADIUS,
    BLOCK_ANGLE,
    BLOCK_POS,
    GOAL_POSE,
    SUCCESS_THRESHOLD,
    WORKSPACE_SIZE,
    simulate,
)
from tutorial_lib.envs.pusht_geometry import (
    BLOCK_KEYPOINTS_LOCAL,
    coverage,
    pose_transform,
    tee_polygons,
)

# outward edges of the T in the body frame: (start, end, outward normal); the agent cannot
# touch the parts of the bar's underside and the stem's sides within r of the inner corners
TEE_EDGES = (
    ((-60.0, 0.0), (60.0, 0.0), (0.0, -1.0)),
    ((60.0, 0.0), (60.0, 30.0), (1.0, 0.0)),
    ((-60.0, 30.0), (-60.0, 0.0), (-1.0, 0.0)),
    ((60.0, 30.0), (30.0, 30.0), (0.0, 1.0)),
    ((-30.0, 30.0), (-60.0, 30.0), (0.0, 1.0)),
    ((15.0, 45.0), (15.0, 120.0), (1.0, 0.0)),
    ((-15.0, 120.0), (-15.0, 45.0), (-1.0, 0.0)),
    ((15.0, 120.0), (-15.0, 120.0), (0.0, 1.0)),
)
# convex hull of the T, counter-clockwise, for the ring of detour waypoints
TEE_HULL = np.array([(-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (15.0, 120.0),
                     (-15.0, 120.0), (-60.0, 30.0)])


@dataclass(frozen=True)
class ExpertConfig:
    """Knobs of ``PushTExpert`` (pixels and env steps)."""

    contacts_per_edge: int = 3           # jittered contact points per outward edge
    depths: tuple = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # push depth past first contact
    max_hold: int = 4                    # push steps tried: 1 .. max_hold
    gap: float = 4.0                     # clearance between agent and block at p0
    ring_clearance: float = 28.0         # ring distance from the T's hull (> r)
    switch_radius: float = 15.0          # next waypoint once this close
    arrive_radius: float = 4.0           # start pushing once this close to p0
    max_approach_steps: int = 20
    step_cost: float = 0.4               # lam: px of keypoint error one env step is worth
    score_noise: float = 0.3             # std of the tie-breaking noise on J (px)


def keypoint_error(pose: np.ndarray, goal_pose: np.ndarray = GOAL_POSE) -> float:
    """e_kp = mean_k ||kp_k(pose) - kp_k(goal)|| over the 9 block keypoints (px)."""
    diff = pose_transform(BLOCK_KEYPOINTS_LOCAL, pose) \
        - pose_transform(BLOCK_KEYPOINTS_LOCAL, goal_pose)
    return float(np.mean(np.linalg.norm(diff, axis=1)))


def distances_to_block(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Distance of each point (N, 2) to the T at ``pose`` (3,); 0 inside -> (N,)."""
    best = np.full(len(points), np.inf)
    for poly in tee_polygons(pose):
        a = poly[None, :, :]
        ab = np.roll(poly, -1, axis=0)[None] - a
        ap = points[:, None, :] - a
        inside = np.all(ab[..., 0] * ap[..., 1] - ab[..., 1] * ap[..., 0] >= 0, axis=1)
        t = np.clip(np.sum(ap * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
        d = np.min(np.linalg.norm(ap - t[..., None] * ab, axis=-1), axis=1)
        best = np.minimum(best, np.where(inside, 0.0, d))
    return best


def segment_is_clear(a: np.ndarray, b: np.ndarray, pose: np.ndarray, clearance: float) -> bool:
    """True if every point of segment a-b (sampled every 4 px) is farther than
    ``clearance`` from the T at ``pose``."""
    n = max(2, int(np.linalg.norm(b - a) / 4.0) + 1)
    points = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
    return bool(np.all(distances_to_block(points, pose) > clearance))


def ring_waypoints(pose: np.ndarray, clearance: float) -> np.ndarray:
    """Detour ring around the T: each hull vertex v offset by ``clearance`` along its two
    edge normals and their bisector, counter-clockwise. pose: (3,) -> (18, 2)."""
    points = []
    n_hull = len(TEE_HULL)
    for k in range(n_hull):
        prev, v, nxt = TEE_HULL[k - 1], TEE_HULL[k], TEE_HULL[(k + 1) % n_hull]
        normals = []
        for e in (v - prev, nxt - v):
            normal = np.array([e[1], -e[0]])
            normals.append(normal / np.linalg.norm(normal))
        bisector = normals[0] + normals[1]
        for normal in (normals[0], bisector / np.linalg.norm(bisector), normals[1]):
            points.append(v + clearance * normal)
    return pose_transform(np.array(points), pose)


def plan_waypoints(start: np.ndarray, goal: np.ndarray, pose: np.ndarray,
                   cfg: ExpertConfig) -> list:
    """Waypoints from ``start`` to ``goal`` that keep the agent off the T at ``pose``.

    Straight if the segment is clear by r + 1; otherwise along the shorter way round the
    ring, skipping every waypoint that a clear straight segment can jump over.
    """
    clearance = AGENT_RADIUS + 1.0
    if segment_is_clear(start, goal, pose, clearance):
        return [goal]
    ring = np.clip(ring_waypoints(pose, cfg.ring_clearance), 0.0, WORKSPACE_SIZE)
    n = len(ring)
    i_start = int(np.argmin(np.linalg.norm(ring - start, axis=1)))
    i_goal = int(np.argmin(np.linalg.norm(ring - goal, axis=1)))
    forward = [(i_start + k) % n for k in range((i_goal - i_start) % n + 1)]
    backward = [(i_start - k) % n for k in range((i_start - i_goal) % n + 1)]
    route = min((forward, backward), key=lambda r: _path_length([start, *ring[r], goal]))
    path = [start, *ring[route], goal]
    waypoints, k = [], 0
    while k < len(path) - 1:  # string pulling: jump to the farthest visible point
        j = len(path) - 1
        while j > k + 1 and not segment_is_clear(path[k], path[j], pose, clearance):
            j -= 1
        waypoints.append(path[j])
        k = j
    return waypoints


def _path_length(points) -> float:
    return float(sum(np.linalg.norm(np.subtract(b, a)) for a, b in zip(points[:-1], points[1:])))


def sample_contacts(rng: np.random.Generator, cfg: ExpertConfig) -> list:
    """Jittered contact points on the T's outward edges: [(c (2,), n (2,))] in the body frame.

    Each edge is cut into ``contacts_per_edge`` equal parts, one uniform point per part.
    """
    contacts = []
    for start, end, normal in TEE_EDGES:
        start, end = np.array(start), np.array(end)
        u = (np.arange(cfg.contacts_per_edge) + rng.uniform(size=cfg.contacts_per_edge)) \
            / cfg.contacts_per_edge
        for t in u:
            contacts.append((start + t * (end - start), np.array(normal)))
    return contacts


@dataclass
class Candidate:
    """A simulated primitive: its actions (T, 2), final sim_state (10,), score J."""

    actions: list
    sim_state: np.ndarray
    score: float
    success: bool = False


class PushTExpert:
    """Scripted expert: ``plan(sim_state)`` -> actions (T, 2) of the best push primitive."""

    def __init__(self, cfg: ExpertConfig = ExpertConfig(), seed: int | None = None,
                 goal_pose: np.ndarray = GOAL_POSE, contact_friction: float = 0.0):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.goal_pose = np.asarray(goal_pose, dtype=np.float64)
        self.contact_friction = contact_friction

    def _step(self, sim_state, target):
        return simulate(sim_state, np.clip(target, 0.0, WORKSPACE_SIZE), self.contact_friction)

    def _finish(self, actions, sim_state) -> Candidate:
        pose = np.append(sim_state[BLOCK_POS], sim_state[BLOCK_ANGLE])
        score = keypoint_error(pose, self.goal_pose) + self.cfg.step_cost * len(actions)
        return Candidate(list(actions), sim_state,
                         score + self.cfg.score_noise * self.rng.standard_normal())

    def _reached_goal(self, sim_state) -> bool:
        pose = np.append(sim_state[BLOCK_POS], sim_state[BLOCK_ANGLE])
        if keypoint_error(pose, self.goal_pose) > 8.0:  # cheap test before the exact one
            return False
        return coverage(pose, self.goal_pose) > SUCCESS_THRESHOLD

    def _approach(self, sim_state, p0, pose):
        """Simulate the approach to p0; returns (actions, sim_state) or None if too long."""
        cfg = self.cfg
        waypoints = plan_waypoints(sim_state[AGENT_POS].copy(), p0, pose, cfg)
        actions, k = [], 0
        while True:
            agent = sim_state[AGENT_POS]
            while (k < len(waypoints) - 1
                   and np.linalg.norm(waypoints[k] - agent) < cfg.switch_radius):
                k += 1
            final = k == len(waypoints) - 1
            if final and np.linalg.norm(p0 - agent) < cfg.arrive_radius:
                return actions, sim_state
            if len(actions) >= cfg.max_approach_steps:
                return None
            actions.append(np.clip(waypoints[k], 0.0, WORKSPACE_SIZE))
            sim_state = self._step(sim_state, actions[-1])
            if self._reached_goal(sim_state):
                return actions, sim_state

    def _candidates_for_contact(self, sim_state, contact, normal):
        cfg = self.cfg
        pose = np.append(sim_state[BLOCK_POS], sim_state[BLOCK_ANGLE])
        c, s = math.cos(pose[2]), math.sin(pose[2])
        rot = np.array([[c, -s], [s, c]])
        n_world = rot @ normal
        p0 = pose[:2] + rot @ contact + n_world * (AGENT_RADIUS + cfg.gap)
        if np.any(p0 < 0) or np.any(p0 > WORKSPACE_SIZE):
            return []
        approach = self._approach(sim_state, p0, pose)
        if approach is None:
            return []
        prefix, state0 = approach
        if self._reached_goal(state0):
            return [Candidate(prefix, state0, -1e9 + len(prefix), success=True)]
        out = [self._finish(prefix, state0)] if prefix else []
        retreat = np.clip(p0 + 5.0 * n_world, 0.0, WORKSPACE_SIZE)
        for depth in cfg.depths:
            target = np.clip(p0 - n_world * (AGENT_RADIUS + cfg.gap + depth), 0.0, WORKSPACE_SIZE)
            actions, state = list(prefix), state0
            for _ in range(cfg.max_hold):
                actions.append(target)
                state = self._step(state, target)
                if self._reached_goal(state):
                    out.append(Candidate(list(actions), state, -1e9 + len(actions), success=True))
                    break
                end = self._step(state, retreat)
                if self._reached_goal(end):
                    out.append(Candidate(actions + [retreat], end, -1e9 + len(actions) + 1,
                                         success=True))
                out.append(self._finish(actions + [retreat], end))
        return out

    def plan(self, sim_state: np.ndarray) -> np.ndarray:
        """Best primitive from ``sim_state`` (10,) -> actions: (T, 2) float64, T >= 1."""
        sim_state = np.asarray(sim_state, dtype=np.float64)
        best = None
        for contact, normal in sample_contacts(self.rng, self.cfg):
            for cand in self._candidates_for_contact(sim_state, contact, normal):
                if best is None or cand.score < best.score:
                    best = cand
        if best is None or not best.actions:  # nothing useful: back off from the block
            agent = sim_state[AGENT_POS]
            centre = sim_state[BLOCK_POS]
            away = agent - centre
            away = away / (np.linalg.norm(away) + 1e-9)
            return np.clip(agent + 30.0 * away, 0.0, WORKSPACE_SIZE)[None]
        return np.array(best.actions)


def run_expert_episode(env, expert: PushTExpert, seed: int | None = None, state=None):
    """Roll out ``expert`` in ``env`` (a PushTEnv) until success or truncation.

    Returns dict with obs: (T, D) float32, actions: (T, 2) float32, coverage: (T,) float64
    (after each step), success: bool, max_coverage: float.
    """
    options = None if state is None else {"state": state}
    obs, info = env.reset(seed=seed, options=options)
    observations, actions, coverages = [], [], []
    done = False
    while not done:
        for action in expert.plan(env.unwrapped.sim_state):
            observations.append(obs)
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            coverages.append(info["coverage"])
            done = terminated or truncated
            if done:
                break
    coverages = np.array(coverages)
    return {"obs": np.array(observations, dtype=np.float32),
            "actions": np.array(actions, dtype=np.float32),
            "coverage": coverages, "success": bool(terminated),
            "max_coverage": float(coverages.max())}
