"""A 2D point-mass maze, modelled on D4RL's maze2d (Fu et al. 2020), as a gymnasium environment.

The ball is a double integrator pushed by a force. Its constants come from D4RL's MuJoCo model
(``d4rl/pointmaze/maze_model.py``, function ``point_maze``):

* the ball is a sphere of radius 0.1 and density 1000 (``inertiafromgeom``), so its mass is
  ``m = 1000 * 4/3 * pi * 0.1**3 = 4.18879`` kg;
* each slide joint has ``damping b = 1`` (the model's default joint), and a motor of ``gear g = 100``
  with ``ctrlrange [-1, 1]``; ``timestep h = 0.01`` with MuJoCo's Euler integrator, one simulation
  step per environment step (``frame_skip = 1``); no gravity and no floor friction along x, y;
* before every step the environment clips the velocity to ``[-5, 5]`` (``MazeEnv.clip_velocity``).

MuJoCo's Euler integrator treats joint damping implicitly, ``(m + h b) v' = m v + h g a``, so

    v_{t+1} = decay * clip(v_t, -5, 5) + h * accel_per_action * a_t,   x_{t+1} = x_t + h * v_{t+1},

with ``decay = m / (m + h b) = 0.997618`` and ``accel_per_action = g / (m + h b) = 23.816`` m/s^2
(23.873 = g / m if damping were explicit). Walls are frictionless (``condim = 1``): after the free
step, a ball whose disc (radius 0.1) overlaps a wall cell is pushed back out along the contact normal
(from the closest point of the cell's square to the centre) and loses its velocity into the wall, so
it stops on faces and slides around round corners. (MuJoCo's soft contact, with margin 0.002, holds a
ball pushed at full force about 3 mm short of touching; ours stops at contact exactly and never
overlaps.)

A rebuild of that MuJoCo model (MuJoCo 4.0, same XML attributes) gives, from rest under ``a = (1, 0)``,
``v = 0.238164`` after one step, i.e. 23.8164 m/s^2, matching the implicit-damping formula above; it
reproduces 5000 steps of the expert's data to 3e-7, and a ball pushed past a wall corner follows the
same path to within a few millimetres.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tutorial_lib.envs.maze_grid import MazeGrid, check_layout

BALL_RADIUS = 0.1
BALL_MASS = 1000.0 * 4.0 / 3.0 * math.pi * BALL_RADIUS**3
MOTOR_GEAR = 100.0
JOINT_DAMPING = 1.0
DT = 0.01
MAX_SPEED = 5.0
VELOCITY_DECAY = BALL_MASS / (BALL_MASS + DT * JOINT_DAMPING)
ACCEL_PER_ACTION = MOTOR_GEAR / (BALL_MASS + DT * JOINT_DAMPING)
GOAL_RADIUS = 0.5
RESET_NOISE = 0.1
EPISODE_LENGTHS = {"umaze": 300, "medium": 600, "large": 800}
_SKIN = 1e-9  # how far from touching a blocked ball is left, so that it never overlaps a wall


def _push_out(walls, x: float, y: float, vx: float, vy: float, radius: float) -> tuple[float, ...]:
    """Move the disc at ``(x, y)`` out of the wall cells it overlaps and cancel its velocity into them.

    For wall cell (i, j), the closest point of its square is ``c = clip((x, y), (i, j) - 0.5, (i, j) + 0.5)``;
    if ``d = ||(x, y) - c|| < radius`` the disc is pushed along ``n = ((x, y) - c) / d`` by
    ``radius - d`` and the inward velocity is removed, ``v <- v - min(v . n, 0) n`` (frictionless
    contact: the ball slides along faces and round corners). The deepest overlap goes first; a
    step moves at most 0.053 < radius, so the centre never gets inside a square.
    """
    ix, iy = math.floor(x + 0.5), math.floor(y + 0.5)
    if abs(x - ix) <= 0.5 - radius and abs(y - iy) <= 0.5 - radius:
        return x, y, vx, vy  # the disc lies inside its own cell: no wall within reach
    for _ in range(4):
        depth, nx, ny = 0.0, 0.0, 0.0
        for i in (ix - 1, ix, ix + 1):
            row = walls[i]
            for j in (iy - 1, iy, iy + 1):
                if not row[j]:
                    continue
                dx = x - min(max(x, i - 0.5), i + 0.5)
                dy = y - min(max(y, j - 0.5), j + 0.5)
                d = math.sqrt(dx * dx + dy * dy)
                if 0.0 < d < radius and radius - d > depth:
                    depth, nx, ny = radius - d, dx / d, dy / d
        if depth == 0.0:
            break
        x, y = x + nx * (depth + _SKIN), y + ny * (depth + _SKIN)
        vn = vx * nx + vy * ny
        if vn < 0.0:
            vx, vy = vx - vn * nx, vy - vn * ny
    return x, y, vx, vy


def point_mass_step(walls, pos, vel, action, kick=(0.0, 0.0)) -> tuple[tuple, tuple]:
    """One 0.01 s step of the point mass among walls; see the module docstring for the equations.

    Args:
        walls: nested sequences of bools, ``walls[i][j]`` True on wall cell (i, j).
        pos, vel: ``(x, y)``, ``(vx, vy)`` floats; action: ``(ax, ay)`` floats already in [-1, 1].
        kick: ``(dvx, dvy)`` added to the new velocity before the position moves (the process noise of
            ``PointMazeEnv(dynamics_noise=...)``; zero in D4RL's deterministic maze).

    Returns:
        ``(x', y'), (vx', vy')`` as tuples of floats.
    """
    vx = VELOCITY_DECAY * min(max(vel[0], -MAX_SPEED), MAX_SPEED) + DT * ACCEL_PER_ACTION * action[0] + kick[0]
    vy = VELOCITY_DECAY * min(max(vel[1], -MAX_SPEED), MAX_SPEED) + DT * ACCEL_PER_ACTION * action[1] + kick[1]
    x, y, vx, vy = _push_out(walls, pos[0] + DT * vx, pos[1] + DT * vy, vx, vy, BALL_RADIUS)
    return (x, y), (vx, vy)


def check_dynamics_noise(sigma) -> float:
    """Validate a process-noise scale: a finite float >= 0 (m/s per step, the std of each velocity kick)."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"dynamics_noise must be a number >= 0 (m/s per step), got {sigma!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"dynamics_noise must be a finite number >= 0 (m/s per step), got {sigma!r}")
    return value


class PointMazeEnv(gym.Env):
    """Reach a goal in a maze2d layout with a force-driven ball; D4RL's sparse reward.

    Observation ``obs: (4,) float32 = (x, y, vx, vy)``; action ``a: (2,) float32`` in ``[-1, 1]^2``
    (finite actions outside are clipped, as D4RL does; NaN/inf or another shape raise ValueError).
    Reward ``r_t = 1 if ||(x, y)_{t+1} - goal|| <= 0.5 else 0``; never terminates; truncates after
    300 / 600 / 800 steps (umaze / medium / large). ``info["goal"]: (2,) float64``.

    ``reset`` puts the ball at a random free cell's centre plus ``U(-0.1, 0.1)^2`` at rest, and the goal
    likewise (D4RL also draws the initial velocity from ``N(0, 0.1^2)``; we start at rest);
    ``reset(options={"start": (x, y), "goal": (x, y)})`` places either exactly instead.
    Coordinates: cell (i, j) of the layout is centred at (x, y) = (i, j) (see ``maze_grid``).
    ``render_mode="rgb_array"`` draws walls, the goal region and the ball with numpy.

    ``dynamics_noise = sigma > 0`` makes the dynamics stochastic (D4RL's are not): each step adds a kick
    ``sigma * N(0, I)`` (m/s) to the velocity, drawn from the generator that ``reset(seed=...)`` seeds, so an
    episode is reproducible from its seed. For scale, a full push changes the velocity by 0.238 m/s per step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(self, layout: str = "umaze", render_mode: str | None = None, cell_pixels: int = 32,
                 dynamics_noise: float = 0.0):
        self.dynamics_noise = check_dynamics_noise(dynamics_noise)
        self.grid = MazeGrid.from_layout(check_layout(layout))
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.cell_pixels = int(cell_pixels)
        self.max_episode_steps = EPISODE_LENGTHS[layout]
        self._walls = tuple(tuple(bool(w) for w in row) for row in self.grid.walls)
        (lo_x, lo_y), (hi_x, hi_y) = self.grid.bounds
        v_bound = MAX_SPEED + DT * ACCEL_PER_ACTION
        self.observation_space = spaces.Box(
            low=np.array([lo_x, lo_y, -v_bound, -v_bound], dtype=np.float32),
            high=np.array([hi_x, hi_y, v_bound, v_bound], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.pos, self.vel = (1.0, 1.0), (0.0, 0.0)
        self.goal = np.zeros(2)
        self.elapsed_steps = 0

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode: ``obs: (4,) float32`` and ``info`` with the goal; see the class docstring."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start", "goal", "velocity"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; valid options are 'start', 'goal' and 'velocity'")
        start = self._sample_point() if options.get("start") is None else self.check_point(options["start"], "start")
        goal = self._sample_point() if options.get("goal") is None else self.check_point(options["goal"], "goal")
        vel = (0.0, 0.0) if options.get("velocity") is None else self.check_velocity(options["velocity"])
        self.pos, self.vel = (float(start[0]), float(start[1])), vel
        self.goal = np.array(goal, dtype=np.float64)
        self.elapsed_steps = 0
        return self._obs(), self._info()

    def step(self, action):
        """Advance 0.01 s: ``obs: (4,) float32, reward, terminated=False, truncated, info``."""
        a = self.check_action(action)
        kick = (0.0, 0.0)
        if self.dynamics_noise > 0:
            kick = tuple((self.dynamics_noise * self.np_random.standard_normal(2)).tolist())
        self.pos, self.vel = point_mass_step(self._walls, self.pos, self.vel, a, kick)
        self.elapsed_steps += 1
        reward = 1.0 if self.distance_to_goal() <= GOAL_RADIUS else 0.0
        truncated = self.elapsed_steps >= self.max_episode_steps
        return self._obs(), reward, False, truncated, self._info()

    def render(self):
        """``(n_rows * cell_pixels, n_cols * cell_pixels, 3) uint8`` top view, rows drawn as printed."""
        if self.render_mode != "rgb_array":
            return None
        from tutorial_lib.envs.maze_render import draw_maze

        return draw_maze(self.grid.walls, self.pos, self.goal, BALL_RADIUS, GOAL_RADIUS, self.cell_pixels)

    # ------------------------------------------------------------------ helpers
    @property
    def state(self) -> np.ndarray:
        """``(4,) float64`` exact state ``(x, y, vx, vy)`` (the observation is its float32 copy)."""
        return np.array(self.pos + self.vel, dtype=np.float64)

    def distance_to_goal(self) -> float:
        """``||(x, y) - goal||_2``."""
        return math.hypot(self.pos[0] - self.goal[0], self.pos[1] - self.goal[1])

    def check_action(self, action) -> tuple[float, float]:
        """Validate an action and clip it to ``[-1, 1]^2``; raise ValueError on a wrong shape or NaN/inf."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"action must have shape (2,) (a force along x and y), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a.tolist()}; use values in [-1, 1]")
        a = np.clip(a, -1.0, 1.0)
        return float(a[0]), float(a[1])

    @staticmethod
    def check_velocity(velocity) -> tuple[float, float]:
        """Validate a start velocity ``(vx, vy)``: finite, each component within ``[-5, 5]``."""
        v = np.asarray(velocity, dtype=np.float64)
        if v.shape != (2,) or not np.all(np.isfinite(v)) or np.any(np.abs(v) > MAX_SPEED):
            raise ValueError(f"velocity must be a finite (vx, vy) with |vx|, |vy| <= {MAX_SPEED}, "
                             f"got {np.asarray(velocity).tolist()}")
        return float(v[0]), float(v[1])

    def check_point(self, point, name: str) -> np.ndarray:
        """Validate a start or goal ``(x, y)``: finite, inside the maze, off the walls (start: by the radius)."""
        p = np.asarray(point, dtype=np.float64)
        cells = (f"free cells (row, col) are {self.grid.free_cells_text()}; "
                 "cell (i, j) is centred at (x, y) = (i, j)")
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f"{name} must be a finite (x, y) pair, got {np.asarray(point).tolist()}")
        (lo_x, lo_y), (hi_x, hi_y) = self.grid.bounds
        where = f"{name} ({p[0]:.2f}, {p[1]:.2f})"
        if not (lo_x <= p[0] <= hi_x and lo_y <= p[1] <= hi_y):
            raise ValueError(
                f"{where} lies outside the {self.grid.layout} maze [{lo_x}, {hi_x}] x [{lo_y}, {hi_y}]; {cells}"
            )
        cell = tuple(int(c) for c in self.grid.xy_to_cell(p))
        if not self.grid.is_free(p):
            raise ValueError(f"{where} lies inside wall cell {cell}; {cells}")
        if name == "start" and not self.grid.is_free(p, BALL_RADIUS):
            raise ValueError(
                f"{where}: the ball of radius {BALL_RADIUS} would overlap a wall; keep the start at least "
                f"{BALL_RADIUS} away from wall cells, e.g. near the centre of a free cell; {cells}"
            )
        return p

    def _sample_point(self) -> np.ndarray:
        cell = self.grid.free_cells[self.np_random.integers(len(self.grid.free_cells))]
        return cell + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, size=2)

    def _obs(self) -> np.ndarray:
        return np.array(self.pos + self.vel, dtype=np.float32)

    def _info(self) -> dict:
        return {"goal": self.goal.copy(), "distance": self.distance_to_goal()}
