"""Draw a Push-T scene into an RGB array with numpy only (no pygame, no window).

Each pixel (row i, column j) of a ``size`` x ``size`` image samples the workspace point
((j + 1/2) s, (i + 1/2) s) with s = 512 / size (y down, as in the simulation), and is
painted in order: background, walls, goal T (filled, with a darker outline), block, agent,
commanded target (a red cross).
"""

from __future__ import annotations

import numpy as np

from tutorial_lib.envs.pusht_geometry import tee_polygons

WORKSPACE_SIZE = 512.0
WALL_INNER = (7.0, 504.0)
AGENT_RADIUS = 15.0

BACKGROUND = (255, 255, 255)
WALL_COLOR = (211, 211, 211)        # LightGray, as the reference
GOAL_COLOR = (144, 238, 144)        # LightGreen
GOAL_OUTLINE_COLOR = (46, 139, 87)  # SeaGreen
BLOCK_COLOR = (119, 136, 153)       # LightSlateGray
AGENT_COLOR = (65, 105, 225)        # RoyalBlue
ACTION_COLOR = (255, 0, 0)


def inside_tee(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Mask of points inside the T at ``pose``: inside one of its two convex rectangles,
    i.e. cross(b - a, p - a) >= 0 for all its counter-clockwise edges (a, b).

    points: (..., 2), pose: (3,) -> (...,) bool.
    """
    mask = np.zeros(points.shape[:-1], dtype=bool)
    for poly in tee_polygons(pose):
        inside = np.ones(points.shape[:-1], dtype=bool)
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            e = b - a
            inside &= e[0] * (points[..., 1] - a[1]) - e[1] * (points[..., 0] - a[0]) >= 0
        mask |= inside
    return mask


def render_scene(block_pose: np.ndarray, agent_position: np.ndarray, goal_pose: np.ndarray,
                 action: np.ndarray | None = None, size: int = 256) -> np.ndarray:
    """Rasterize the scene.

    block_pose, goal_pose: (3,) [x, y, theta]; agent_position: (2,); action: (2,) or None.
    Returns image: (size, size, 3) uint8.
    """
    scale = WORKSPACE_SIZE / size
    centers = (np.arange(size) + 0.5) * scale
    points = np.stack(np.meshgrid(centers, centers, indexing="xy"), axis=-1)  # (H, W, 2)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND

    lo, hi = WALL_INNER
    image[(points < lo).any(-1) | (points > hi).any(-1)] = WALL_COLOR

    goal = inside_tee(points, goal_pose)
    width = max(1.5 * scale, 2.0)  # outline width in workspace pixels
    eroded = goal.copy()
    for dx, dy in ((width, 0), (-width, 0), (0, width), (0, -width)):
        eroded &= inside_tee(points + np.array([dx, dy]), goal_pose)
    image[goal] = GOAL_COLOR
    image[goal & ~eroded] = GOAL_OUTLINE_COLOR

    image[inside_tee(points, block_pose)] = BLOCK_COLOR
    agent_dist = np.linalg.norm(points - np.asarray(agent_position), axis=-1)
    image[agent_dist <= AGENT_RADIUS] = AGENT_COLOR

    if action is not None:
        arm, half_width = max(8.0, 4 * scale), max(1.0, 0.5 * scale)
        d = np.abs(points - np.asarray(action))
        cross = ((d[..., 0] <= arm) & (d[..., 1] <= half_width)) | \
                ((d[..., 1] <= arm) & (d[..., 0] <= half_width))
        image[cross] = ACTION_COLOR
    return image
