"""Geometry of the Push-T block: the T's polygons, its keypoints and the exact coverage.

The T is the union of two rectangles with disjoint interiors, in the block's body frame
(pixels, y down): the bar [-60, 60] x [0, 30] and the stem [-15, 15] x [30, 120].
Coverage of a block pose against the goal pose is computed exactly,

    coverage = area(T_block ∩ T_goal) / area(T_goal)
             = sum_{i, j} area(R_i(block) ∩ R_j(goal)) / 6300,

because the four pieces R_i ∩ R_j have disjoint interiors; each piece is the intersection
of two convex quadrilaterals (Sutherland-Hodgman clipping) and its area the shoelace formula.
"""

from __future__ import annotations

import math

import numpy as np

# counter-clockwise in (x, y) (positive shoelace area)
BAR_VERTICES = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0))
STEM_VERTICES = ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0))
TEE_AREA = 120.0 * 30.0 + 30.0 * 90.0  # 6300 px^2

# The 9 keypoints of the state observation, in the body frame: the 8 corners of the T's
# outline (bar: 4 outer corners; stem: the 2 corners where it meets the bar and the 2 at its
# foot) and the middle of the stem. The reference picks 9 points by farthest-point sampling
# of the rendered T; fixed corners spread over the same outline and are reproducible.
BLOCK_KEYPOINTS_LOCAL = np.array([
    (-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0),
    (15.0, 30.0), (-15.0, 30.0), (15.0, 120.0), (-15.0, 120.0),
    (0.0, 75.0),
])


def pose_transform(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Map body-frame points to the world: p_world = R(theta) p + (x, y).

    points: (..., 2), pose: (3,) [x, y, theta] -> (..., 2).
    """
    c, s = math.cos(pose[2]), math.sin(pose[2])
    rot = np.array([[c, -s], [s, c]])
    return np.asarray(points) @ rot.T + np.asarray(pose[:2], dtype=np.float64)


def tee_polygons(pose: np.ndarray) -> np.ndarray:
    """World vertices of the bar and the stem of a T at ``pose``.

    pose: (3,) [x, y, theta] -> (2, 4, 2): [bar, stem] x 4 counter-clockwise vertices.
    """
    return pose_transform(np.array([BAR_VERTICES, STEM_VERTICES]), pose)


def block_keypoints(pose: np.ndarray) -> np.ndarray:
    """The 9 keypoints ``BLOCK_KEYPOINTS_LOCAL`` of a T at ``pose`` (3,) -> (9, 2)."""
    return pose_transform(BLOCK_KEYPOINTS_LOCAL, pose)


def polygon_area(vertices: np.ndarray) -> float:
    """Shoelace area 1/2 |sum_k x_k y_{k+1} - x_{k+1} y_k| of a polygon (N, 2); 0 if N < 3."""
    if len(vertices) < 3:
        return 0.0
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of two convex polygons by Sutherland-Hodgman clipping.

    For every edge (a, b) of ``clip`` (counter-clockwise), keep the part of ``subject`` on
    its inner side cross(b - a, p - a) >= 0, adding the crossing points of the cut.
    subject: (N, 2), clip: (M, 2) counter-clockwise -> (K, 2), K = 0 if they do not overlap.
    """
    output = [tuple(p) for p in subject]
    n_clip = len(clip)
    for k in range(n_clip):
        if not output:
            break
        ax, ay = clip[k]
        bx, by = clip[(k + 1) % n_clip]
        ex, ey = bx - ax, by - ay
        inputs, output = output, []
        prev = inputs[-1]
        prev_side = ex * (prev[1] - ay) - ey * (prev[0] - ax)
        for cur in inputs:
            cur_side = ex * (cur[1] - ay) - ey * (cur[0] - ax)
            if cur_side >= 0:
                if prev_side < 0:
                    output.append(_cut(prev, cur, prev_side, cur_side))
                output.append(cur)
            elif prev_side >= 0:
                output.append(_cut(prev, cur, prev_side, cur_side))
            prev, prev_side = cur, cur_side
    return np.array(output, dtype=np.float64).reshape(-1, 2)


def _cut(p, q, side_p, side_q):
    """Point where segment p -> q crosses the clipping line (sides of opposite sign)."""
    t = side_p / (side_p - side_q)
    return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))


def intersection_area(pose_a: np.ndarray, pose_b: np.ndarray) -> float:
    """area(T at pose_a ∩ T at pose_b) in px^2, exact up to rounding."""
    polys_a, polys_b = tee_polygons(pose_a), tee_polygons(pose_b)
    if np.hypot(pose_a[0] - pose_b[0], pose_a[1] - pose_b[1]) > 2 * 130.0:
        return 0.0  # every point of a T lies within 121 px of its body origin
    return sum(polygon_area(clip_convex(pa, pb)) for pa in polys_a for pb in polys_b)


def coverage(block_pose: np.ndarray, goal_pose: np.ndarray) -> float:
    """Coverage area(T_block ∩ T_goal) / area(T_goal) in [0, 1]; poses (3,) [x, y, theta]."""
    return min(1.0, intersection_area(block_pose, goal_pose) / TEE_AREA)
