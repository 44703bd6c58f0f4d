"""Figures and animations in one style: densities, score fields, particles, training curves.

Animations are matplotlib ``FuncAnimation`` objects: :func:`show_animation` embeds one in a
notebook (and so on the website) as JavaScript-driven HTML ("jshtml"), :func:`save_gif`
exports it as a GIF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
from matplotlib import animation

__all__ = ["set_style", "grid_points", "plot_density", "plot_score_field", "plot_training_curve",
           "plot_obstacle_task", "maze_xy", "plot_maze", "plot_plans", "animate_plans", "animate_points", "animate_images",
           "show_animation", "save_gif", "COLORS"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def set_style() -> None:
    """The book's matplotlib defaults: compact figures, light grid, readable fonts."""
    matplotlib.rcParams.update({
        "figure.figsize": (6.0, 4.0), "figure.dpi": 90, "savefig.dpi": 90,
        "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False, "axes.spines.right": False,
        "font.size": 10, "axes.titlesize": 11, "legend.frameon": False,
        "animation.embed_limit": 40.0, "image.cmap": "viridis",
    })


def grid_points(lim: float | Sequence[float], n: int = 100) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """A square grid over ``[-lim, lim]^2`` (or ``[x0, x1] x [y0, y1]``): ``(n*n, 2)`` points and the mesh."""
    x0, x1, y0, y1 = (-lim, lim, -lim, lim) if np.isscalar(lim) else lim
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    pts = torch.tensor(np.stack([xs.ravel(), ys.ravel()], axis=1), dtype=torch.float32)
    return pts, xs, ys


def plot_density(ax, log_prob: Callable[[torch.Tensor], torch.Tensor], lim=6.0, n: int = 150, cmap="Blues"):
    """Filled contours of ``exp(log_prob)`` on a grid."""
    pts, xs, ys = grid_points(lim, n)
    with torch.no_grad():
        dens = log_prob(pts).exp().reshape(xs.shape).numpy()
    ax.contourf(xs, ys, dens, levels=20, cmap=cmap)
    ax.set_aspect("equal")
    return ax


def plot_score_field(ax, score: Callable[[torch.Tensor], torch.Tensor], lim=6.0, n: int = 21,
                     normalize: bool = True, color="k", **kwargs):
    """Arrows of a 2D vector field ``score(points)`` on a grid.

    ``normalize`` rescales arrow lengths to ``log(1 + |v|)``, so that both the weak field between
    modes and the strong field far from the data stay visible.
    """
    pts, xs, ys = grid_points(lim, n)
    with torch.no_grad():
        v = score(pts).numpy()
    if normalize:
        norm = np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        v = v / norm * np.log1p(norm) / np.log1p(norm).max()
    ax.quiver(xs, ys, v[:, 0].reshape(xs.shape), v[:, 1].reshape(xs.shape), color=color,
              angles="xy", **kwargs)
    ax.set_aspect("equal")
    return ax


def plot_training_curve(history: dict, ax=None, label: str | None = None, logy: bool = True):
    """Loss against optimisation step from a checkpoint's ``history``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["step"], history["loss"], label=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    if label:
        ax.legend()
    return ax


def plot_obstacle_task(ax, paths=(), success=None, task=None, alpha: float = 0.6):
    """The obstacle task of Chapter 2: obstacle, goal, start box, and paths (green: success, red: not).

    ``paths``: a ``(B, L, 2)`` tensor or a list of ``(L_i, 2)`` paths; ``success``: ``(B,)`` bool or
    None (all drawn in blue). Returns ``ax``.
    """
    from matplotlib.patches import Circle, Rectangle

    from .envs.obstacle2d import ObstacleTask

    task = task or ObstacleTask()
    ax.add_patch(Circle(task.obstacle, task.obstacle_radius, color="0.35", zorder=3))
    ax.add_patch(Circle(task.goal, task.goal_radius, color=COLORS[2], alpha=0.3, zorder=1))
    ax.add_patch(Rectangle((task.start_x[0], task.start_y[0]), task.start_x[1] - task.start_x[0],
                           task.start_y[1] - task.start_y[0], color=COLORS[0], alpha=0.2, zorder=1))
    for i, path in enumerate(paths):
        path = torch.as_tensor(path).detach().cpu().numpy()
        colour = COLORS[0] if success is None else (COLORS[2] if bool(success[i]) else COLORS[1])
        ax.plot(path[:, 0], path[:, 1], color=colour, alpha=alpha, lw=1, zorder=2)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal")
    return ax


def maze_xy(points):
    """Maze positions ``(..., >= 2)`` as plot coordinates ``(horizontal, vertical) = (y, x)`` (see ``plot_maze``)."""
    p = np.asarray(points)
    return p[..., 1], p[..., 0]


def plot_maze(ax, layout: str, start=None, goal=None, goal_radius: float = 0.5):
    """Draw a maze2d layout as the environment renders it and the layout text reads: cell ``(i, j)``
    (centred at ``(x, y) = (i, j)``) in row ``i`` from the top, column ``j``; so ``x`` points down
    and ``y`` right. ``start``, ``goal``: ``(2,)`` positions to mark (a dot; a star in its reward disc).
    Draw points with :func:`maze_xy`, which swaps them to ``(y, x)``.
    """
    from .envs.maze_grid import MazeGrid

    walls = MazeGrid.from_layout(layout).walls
    n_x, n_y = walls.shape
    ax.imshow(walls, cmap="Greys", vmin=0, vmax=1.4, extent=(-0.5, n_y - 0.5, n_x - 0.5, -0.5),
              interpolation="nearest", zorder=0)
    if goal is not None:
        gy, gx = maze_xy(goal)
        ax.add_patch(plt.Circle((gy, gx), goal_radius, color=COLORS[2], alpha=0.3, zorder=1))
        ax.plot(gy, gx, marker="*", color=COLORS[2], ms=12, zorder=4)
    if start is not None:
        ax.plot(*maze_xy(start), marker="o", color=COLORS[0], ms=7, zorder=4)
    ax.set(xlim=(-0.5, n_y - 0.5), ylim=(n_x - 0.5, -0.5), aspect="equal", xticks=[], yticks=[])
    ax.grid(False)
    return ax


def plot_plans(ax, layout: str, plans, start=None, goal=None, color=COLORS[3], alpha: float = 0.8, lw: float = 1.5,
               dots: bool = False):
    """A maze with plans drawn over it; ``plans: (n, H, >= 2)`` positions (or ``(H, >= 2)`` for one)."""
    plot_maze(ax, layout, start, goal)
    plans = np.asarray(plans)
    for plan in plans.reshape(-1, *plans.shape[-2:]):
        ax.plot(*maze_xy(plan), color=color, alpha=alpha, lw=lw, zorder=3,
                marker="." if dots else None, ms=3)
    return ax


def animate_plans(frames, layout: str, start=None, goal=None, titles: Sequence[str] | None = None,
                  interval: int = 120, size: float = 4.0) -> animation.FuncAnimation:
    """Animate plans emerging from noise in a maze: ``frames: (F, n, H, >= 2)`` positions, one line per plan."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] < 2:
        raise ValueError(f"frames must have shape (F, n_plans, H, >= 2), got {frames.shape}")
    from .envs.maze_grid import MazeGrid

    n_x, n_y = MazeGrid.from_layout(layout).walls.shape
    fig, ax = plt.subplots(figsize=(size * n_y / max(n_x, n_y) + 0.2, size * n_x / max(n_x, n_y) + 0.5))
    plot_maze(ax, layout, start, goal)
    lines = [ax.plot(*maze_xy(p), color=COLORS[3], alpha=0.8, lw=1.5, marker=".", ms=3, zorder=3)[0]
             for p in frames[0]]
    title = ax.set_title(titles[0] if titles else "")
    fig.tight_layout()

    def update(i):
        for line, p in zip(lines, frames[i]):
            line.set_data(*maze_xy(p))
        if titles:
            title.set_text(titles[i])
        return (*lines, title)

    return animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)


def animate_points(frames, lim=6.0, background: Callable | None = None, titles: Sequence[str] | None = None,
                   panel_titles: Sequence[str] | None = None, interval: int = 120, size: float = 3.0,
                   color: str = COLORS[0], panel_size: float = 3.6) -> animation.FuncAnimation:
    """Animate point clouds side by side.

    Args:
        frames: ``(F, N, 2)`` for one panel, or a list of such arrays (same F) for several.
        background: ``background(ax)`` draws the static scene of every panel (a density, a maze).
        titles: one figure title per frame (e.g. the noise level).
        panel_titles: one title per panel.
    """
    panels = frames if isinstance(frames, (list, tuple)) else [frames]
    panels = [np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f) for f in panels]
    for f in panels:
        if f.ndim != 3 or f.shape[-1] != 2 or len(f) != len(panels[0]):
            raise ValueError(f"each frames array must have shape (F, N, 2) with the same F, got {f.shape}")
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), panel_size + 0.3), squeeze=False)
    x0, x1, y0, y1 = (-lim, lim, -lim, lim) if np.isscalar(lim) else lim
    scats = []
    for k, (ax, f) in enumerate(zip(axes[0], panels)):
        if background is not None:
            background(ax)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        if panel_titles:
            ax.set_title(panel_titles[k])
        scats.append(ax.scatter(f[0, :, 0], f[0, :, 1], s=size, color=color, alpha=0.6, linewidths=0))
    suptitle = fig.suptitle(titles[0] if titles else "")
    fig.tight_layout()

    def update(i):
        for scat, f in zip(scats, panels):
            scat.set_offsets(f[i])
        if titles:
            suptitle.set_text(titles[i])
        return (*scats, suptitle)

    return animation.FuncAnimation(fig, update, frames=len(panels[0]), interval=interval, blit=False)


def animate_images(frames, titles: Sequence[str] | None = None, interval: int = 100,
                   size: float = 3.2) -> animation.FuncAnimation:
    """Play rendered frames ``(F, S, S, 3)`` uint8 (e.g. an episode's ``env.render()`` images)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (F, height, width, 3), got {frames.shape}")
    fig, ax = plt.subplots(figsize=(size, size + 0.3))
    ax.set_axis_off()
    image = ax.imshow(frames[0])
    title = ax.set_title(titles[0] if titles else "")
    fig.tight_layout()

    def update(i):
        image.set_data(frames[i])
        if titles:
            title.set_text(titles[i])
        return image, title

    return animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)


def show_animation(anim: animation.FuncAnimation):
    """Embed an animation in the notebook as jshtml (plays on the website too) and close its figure."""
    from IPython.display import HTML

    html = anim.to_jshtml(default_mode="once")
    plt.close(anim._fig)
    return HTML(html)


def save_gif(anim: animation.FuncAnimation, path: str | Path, fps: int = 10, dpi: int = 70) -> Path:
    """Write an animation to a GIF with Pillow (no external programs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=dpi)
    return path
