"""The maze2d wall grids and their geometry: cells, coordinates, collisions, shortest paths.

The three layouts are the ones of D4RL's maze2d (Fu et al. 2020, ``d4rl/pointmaze/maze_model.py``),
written row by row: ``#`` a wall cell, ``O`` a free cell, ``G`` the free cell holding the fixed goal of
the single-task setting.

Coordinates. Row ``i`` and column ``j`` of the layout string form cell ``(i, j)``. As in D4RL, where
the ball's ``qpos`` equals the cell index at a cell's reset location, the centre of cell ``(i, j)``
lies at the continuous point ``(x, y) = (i, j)`` and the cell covers the square
``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. So ``x`` grows down the rows of the printed layout and
``y`` along its columns; ``cell_of(p) = round(p)``.

(D4RL places its wall boxes 0.2 away from those integer centres, because the ball's body starts at
(1.2, 1.2) while the walls sit at (i + 1, j + 1); we drop that offset so that cells are centred on
integers exactly.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

LAYOUTS: dict[str, str] = {
    "umaze": "\n".join([
        "#####",
        "#GOO#",
        "###O#",
        "#OOO#",
        "#####",
    ]),
    "medium": "\n".join([
        "########",
        "#OO##OO#",
        "#OO#OOO#",
        "##OOO###",
        "#OO#OOO#",
        "#O#OO#O#",
        "#OOO#OG#",
        "########",
    ]),
    "large": "\n".join([
        "############",
        "#OOOO#OOOOO#",
        "#O##O#O#O#O#",
        "#OOOOOO#OOO#",
        "#O####O###O#",
        "#OO#O#OOOOO#",
        "##O#O#O#O###",
        "#OO#OOO#OGO#",
        "############",
    ]),
}
"""D4RL's maze2d layouts (``U_MAZE``, ``MEDIUM_MAZE``, ``LARGE_MAZE``), one string row per grid row."""

# The four moves of the grid world, in (d_row, d_col).
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def check_layout(layout: str) -> str:
    """Return ``layout`` if it names a maze, else raise a ValueError listing the valid names."""
    if layout not in LAYOUTS:
        raise ValueError(
            f"unknown maze layout {layout!r}; valid layouts are {sorted(LAYOUTS)}"
        )
    return layout


def parse_layout(text: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Parse a layout string into a wall mask and the ``G`` cell.

    Returns ``walls: (n_rows, n_cols) bool`` (True on ``#``) and the ``(i, j)`` of ``G`` or None.
    """
    rows = text.strip().split("\n")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"layout rows must have equal lengths, got {[len(r) for r in rows]}")
    unknown = set("".join(rows)) - set("#OG")
    if unknown:
        raise ValueError(f"layout has unknown tiles {sorted(unknown)}; use '#', 'O' or 'G'")
    walls = np.array([[c == "#" for c in r] for r in rows], dtype=bool)
    goals = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == "G"]
    return walls, (goals[0] if goals else None)


@dataclass(frozen=True)
class MazeGrid:
    """A maze's wall grid with its coordinate conversions, collision test and grid shortest paths.

    Attributes:
        layout: the layout's name, e.g. ``"umaze"``.
        walls: ``(n_rows, n_cols) bool``, True on wall cells.
        goal_cell: ``(i, j)`` of the ``G`` tile (the fixed goal of the single-task setting).
        free_cells: ``(n_free, 2) int64``, the ``(i, j)`` of every free cell in row-major order.
    """

    layout: str
    walls: np.ndarray = field(repr=False)
    goal_cell: tuple[int, int]
    free_cells: np.ndarray = field(repr=False)

    @classmethod
    def from_layout(cls, layout: str) -> "MazeGrid":
        """Build the grid of a named layout (``"umaze"``, ``"medium"`` or ``"large"``)."""
        walls, goal_cell = parse_layout(LAYOUTS[check_layout(layout)])
        walls.setflags(write=False)
        free_cells = np.argwhere(~walls).astype(np.int64)
        free_cells.setflags(write=False)
        return cls(layout, walls, goal_cell, free_cells)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the grid."""
        return self.walls.shape

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 2)`` array ``[[x_min, y_min], [x_max, y_max]]`` of the maze's outer square."""
        n_rows, n_cols = self.shape
        return np.array([[-0.5, -0.5], [n_rows - 0.5, n_cols - 0.5]])

    # ------------------------------------------------------------------ coordinates
    @staticmethod
    def cell_to_xy(cells) -> np.ndarray:
        """Centre of cells: ``(x, y) = (i, j)``. ``cells: (..., 2) int -> (..., 2) float64``."""
        return np.asarray(cells, dtype=np.float64)

    @staticmethod
    def xy_to_cell(points) -> np.ndarray:
        """Cell containing each point: ``(i, j) = round(x, y)``. ``(..., 2) -> (..., 2) int64``."""
        return np.floor(np.asarray(points, dtype=np.float64) + 0.5).astype(np.int64)

    def free_cells_text(self) -> str:
        """The free cells as text for error messages, e.g. ``"(1, 1), (1, 2), ..."``."""
        return ", ".join(f"({i}, {j})" for i, j in self.free_cells)

    # ------------------------------------------------------------------ collisions
    def is_free(self, points, radius: float = 0.0):
        """Whether a disc of ``radius`` around each point stays off every wall cell.

        A point ``p`` collides with wall cell ``c`` when its distance to the cell's square,
        ``|| max(|p - c| - 0.5, 0) ||_2``, is below ``radius`` (for ``radius = 0``: when ``p`` lies
        strictly inside the square). Points outside the maze's outer square are never free.
        Only the 3 x 3 cells around ``round(p)`` can be touched, since ``radius < 0.5``.

        Args:
            points: ``(..., 2)`` positions ``(x, y)``, a numpy array or a torch tensor.
            radius: ``0 <= radius < 0.5``; use the ball radius to test the ball, 0 to test a point.

        Returns:
            ``(...,)`` bool, of the input's kind (numpy array or torch tensor on the input's device).
        """
        if not 0.0 <= radius < 0.5:
            raise ValueError(f"radius must lie in [0, 0.5), got {radius}")
        as_torch = hasattr(points, "detach")
        p = points.detach().cpu().numpy() if as_torch else np.asarray(points)
        if p.ndim == 0 or p.shape[-1] != 2:
            raise ValueError(f"points must have shape (..., 2), got {p.shape}")
        p = p.astype(np.float64)
        (x_min, y_min), (x_max, y_max) = self.bounds
        inside = (p[..., 0] >= x_min) & (p[..., 0] <= x_max) & (p[..., 1] >= y_min) & (p[..., 1] <= y_max)
        finite = np.all(np.isfinite(p), axis=-1)
        padded = np.pad(self.walls, 2, constant_values=True)  # so that neighbours of edge points exist
        centre = self.xy_to_cell(np.clip(np.where(np.isfinite(p), p, 0.0), self.bounds[0], self.bounds[1]))
        hit = np.zeros(p.shape[:-1], dtype=bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                cell = centre + np.array([di, dj])
                is_wall = padded[cell[..., 0] + 2, cell[..., 1] + 2]
                gap = np.maximum(np.abs(p - cell) - 0.5, 0.0)
                if radius > 0:
                    touches = np.hypot(gap[..., 0], gap[..., 1]) < radius
                else:
                    touches = np.all(np.abs(p - cell) < 0.5, axis=-1)
                hit |= is_wall & touches
        free = inside & ~hit & finite
        if as_torch:
            import torch

            return torch.from_numpy(free).to(points.device)
        return free

    # ------------------------------------------------------------------ shortest paths
    def distances_to(self, goal_cell) -> np.ndarray:
        """Breadth-first grid distances to ``goal_cell`` over 4-connected free cells.

        ``d(goal) = 0``, ``d(c) = 1 + min over free neighbours n of d(n)``; the fixed point of
        D4RL's Q-iteration with unit steps. Returns ``(n_rows, n_cols) int64``, -1 on walls.
        """
        goal_cell = self._check_cell(goal_cell, "goal_cell")
        dist = np.full(self.shape, -1, dtype=np.int64)
        dist[goal_cell] = 0
        queue = deque([goal_cell])
        while queue:
            i, j = queue.popleft()
            for di, dj in _MOVES:
                n = (i + di, j + dj)
                if not self.walls[n] and dist[n] < 0:
                    dist[n] = dist[i, j] + 1
                    queue.append(n)
        return dist

    def shortest_path(self, start_cell, goal_cell) -> np.ndarray:
        """Cells of a shortest 4-connected path from ``start_cell`` to ``goal_cell``, both included.

        Greedy descent of ``distances_to(goal_cell)``; ties go to the first of up, down, left, right.
        Returns ``(n_cells, 2) int64``; ``n_cells - 1`` is the grid distance.
        """
        start_cell = self._check_cell(start_cell, "start_cell")
        dist = self.distances_to(goal_cell)
        path = [start_cell]
        while dist[path[-1]] > 0:
            i, j = path[-1]
            path.append(min(
                ((i + di, j + dj) for di, dj in _MOVES if dist[i + di, j + dj] >= 0),
                key=lambda n: dist[n],
            ))
        return np.array(path, dtype=np.int64)

    def _check_cell(self, cell, name: str) -> tuple[int, int]:
        i, j = (int(v) for v in np.asarray(cell).reshape(2))
        n_rows, n_cols = self.shape
        if not (0 <= i < n_rows and 0 <= j < n_cols) or self.walls[i, j]:
            raise ValueError(
                f"{name} {(i, j)} is not a free cell of the {self.layout} maze; "
                f"free cells (row, col) are {self.free_cells_text()}"
            )
        return i, j
