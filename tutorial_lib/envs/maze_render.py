"""Top-view pictures of a maze with numpy alone: walls, the goal region, the ball, optional paths.

Pixel ``(u, v)`` of a picture with ``px`` pixels per cell shows the point
``(x, y) = ((u + 0.5) / px - 0.5, (v + 0.5) / px - 0.5)``, so rows of the image follow rows of
the layout as it is printed (x downwards, y to the right).
"""

from __future__ import annotations

import numpy as np

FLOOR = np.array([235, 238, 242], dtype=np.uint8)
WALL = np.array([178, 127, 76], dtype=np.uint8)  # D4RL's wall material, rgba (.7, .5, .3)
GOAL = np.array([200, 60, 60], dtype=np.uint8)
BALL = np.array([40, 80, 200], dtype=np.uint8)
PATH = np.array([40, 160, 80], dtype=np.uint8)


def pixel_coordinates(shape: tuple[int, int], px: int) -> np.ndarray:
    """``(H, W, 2)`` continuous ``(x, y)`` at the centre of each pixel of a ``shape`` grid's picture."""
    u = (np.arange(shape[0] * px) + 0.5) / px - 0.5
    v = (np.arange(shape[1] * px) + 0.5) / px - 0.5
    return np.stack(np.meshgrid(u, v, indexing="ij"), axis=-1)


def _paint_disc(image, xy, centre, radius, colour, alpha=1.0):
    mask = np.hypot(xy[..., 0] - centre[0], xy[..., 1] - centre[1]) <= radius
    blend = (1 - alpha) * image[mask] + alpha * colour
    image[mask] = blend.astype(np.uint8)


def draw_maze(walls, ball=None, goal=None, ball_radius=0.1, goal_radius=0.5, px=32, paths=()):
    """Draw a maze picture.

    Args:
        walls: ``(n_rows, n_cols) bool`` wall grid.
        ball, goal: ``(2,)`` positions or None; the goal is drawn as its reward disc plus a dot.
        paths: sequence of ``(T, 2)`` position arrays drawn as dots (e.g. plans or rollouts).

    Returns:
        ``(n_rows * px, n_cols * px, 3) uint8``.
    """
    walls = np.asarray(walls, dtype=bool)
    image = np.where(np.kron(walls, np.ones((px, px), dtype=bool))[..., None], WALL, FLOOR).astype(np.uint8)
    xy = pixel_coordinates(walls.shape, px)
    if goal is not None:
        _paint_disc(image, xy, goal, goal_radius, GOAL, alpha=0.25)
        _paint_disc(image, xy, goal, max(2.0 / px, 0.06), GOAL)
    for path in paths:
        pixels = np.floor((np.asarray(path, dtype=np.float64).reshape(-1, 2) + 0.5) * px).astype(int)
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                u = np.clip(pixels[:, 0] + du, 0, image.shape[0] - 1)
                v = np.clip(pixels[:, 1] + dv, 0, image.shape[1] - 1)
                image[u, v] = PATH
    if ball is not None:
        _paint_disc(image, xy, ball, ball_radius, BALL)
    return image
