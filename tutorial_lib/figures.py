"""The book's stand-alone figures, each made by one command (no notebook needed).

    python -m tutorial_lib.figures annealed-langevin   # -> book/figures/annealed_langevin.gif
    python -m tutorial_lib.figures literature-map      # -> book/figures/literature_map.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

__all__ = ["annealed_langevin_gif", "literature_map_png", "LITERATURE_MAP"]

BOOK_FIGURES = Path(__file__).resolve().parent.parent / "book" / "figures"


def annealed_langevin_gif(path: str | Path = BOOK_FIGURES / "annealed_langevin.gif", n_particles: int = 500,
                          seed: int = 0) -> Path:
    """Annealed Langevin dynamics on Song & Ermon's two-mode mixture, as an animated GIF.

    Particles start uniformly in [-8, 8]^2 and follow the exact score of the mixture blurred at
    each of 10 noise levels from 10 down to 0.1 (the setting of Chapter 1).
    """
    matplotlib.use("Agg")
    from .experiments.recap import LANGEVIN_SETTINGS
    from .diffusion.langevin import annealed_langevin_dynamics, geometric_sigmas
    from .plotting import animate_points, plot_density, save_gif, set_style
    from .diffusion.toy_data import song_ermon_mixture
    from .core.utils import manual_seed
    import torch

    set_style()
    s, mixture = LANGEVIN_SETTINGS, song_ermon_mixture()
    g = manual_seed(seed)
    x0 = (torch.rand(n_particles, 2, generator=g) * 2 - 1) * s["box"]
    sigmas = geometric_sigmas(s["sigma_max"], s["sigma_min"], s["n_sigmas"])
    traj = annealed_langevin_dynamics(lambda x, sig: mixture.noised(sig).score(x), x0, sigmas,
                                      s["annealed_step_size"], s["n_steps_each"], generator=g,
                                      return_trajectory=True)
    frames = list(range(0, len(traj), 20)) + [len(traj) - 1] * 8  # hold the last frame
    titles = [f"noise level sigma = {sigmas[min(max(i - 1, 0) // s['n_steps_each'], len(sigmas) - 1)].item():.2f}"
              for i in frames]
    anim = animate_points(traj[frames], lim=11, titles=titles, size=5, panel_size=3.6,
                          background=lambda ax: plot_density(ax, mixture.log_prob, lim=11, cmap="Greys"))
    return save_gif(anim, path, fps=8, dpi=100)


# The field on the outline's two axes: (score from, what is diffused) -> [(work, in this book?)].
# A work marked True runs in this book (the chapter is named in book/literature/index.md).
LITERATURE_MAP = {
    ("data", "actions"): [("Diffusion Policy", True), ("Diffusion-QL", False), ("IDQL", True),
                          ("Consistency Policy", False), ("OneDP", False), ("DPPO", False), ("QSM", False),
                          ("DSRL", False)],
    ("data", "states"): [("SynthER", False), ("DIAMOND", False), ("sequence model (Ch. 2)", True)],
    ("data", "trajectories"): [("Diffuser", True), ("Decision Diffuser", False), ("Hierarchical Diffuser", False),
                               ("Diffusion-ES", False), ("SafeDiffuser", False), ("DPCC", False)],
    ("hybrid", "actions"): [],
    ("hybrid", "states"): [],
    ("hybrid", "trajectories"): [("Motion Planning Diffusion", True), ("AdaptDiffuser", False)],
    ("model", "actions"): [],
    ("model", "states"): [],
    ("model", "trajectories"): [("Model-Based Diffusion", True), ("DIAL-MPC", False)],
}
MAP_ROWS = {"data": "data-driven\n(denoising data)", "hybrid": "hybrid\n(another optimiser's output)",
            "model": "model-based\n(computed from the model)"}
MAP_COLUMNS = {"actions": "actions\n(one, or a chunk)", "states": "states\n(a model: transitions)",
               "trajectories": "trajectories\n(state or state-action\nsequences)"}


def literature_map_png(path: str | Path = BOOK_FIGURES / "literature_map.png") -> Path:
    """The field on the outline's two axes: how the score is obtained (rows) and what is diffused
    (columns), with the works of each cell; those that run in this book are drawn bold and blue."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import COLORS, set_style

    set_style()
    fig, ax = plt.subplots(figsize=(10, 5.6))
    ax.set(xlim=(-1.25, 3), ylim=(3, -0.5))
    ax.axis("off")
    for j, col in enumerate(MAP_COLUMNS):
        ax.text(j + 0.5, -0.22, MAP_COLUMNS[col], ha="center", va="center", fontsize=10, fontweight="bold")
    for i, row in enumerate(MAP_ROWS):
        ax.text(-0.62, i + 0.5, MAP_ROWS[row], ha="center", va="center", fontsize=10, fontweight="bold")
        for j, col in enumerate(MAP_COLUMNS):
            works = LITERATURE_MAP[(row, col)]
            ax.add_patch(plt.Rectangle((j + 0.03, i + 0.03), 0.94, 0.94, facecolor="#f4f4f4" if works else "white",
                                       edgecolor="#999999", lw=0.8))
            for k, (name, here) in enumerate(works or [("(open)", False)]):
                y = i + 0.5 + (k - (max(len(works), 1) - 1) / 2) * 0.105
                ax.text(j + 0.5, y, name, ha="center", va="center", fontsize=8.5,
                        color=COLORS[0] if here else ("#999999" if not works else "k"),
                        fontweight="bold" if here else "normal")
    ax.text(-1.2, 2.98, "bold blue: runs in this book", fontsize=8.5, color=COLORS[0], fontweight="bold", va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


FIGURES = {"annealed-langevin": annealed_langevin_gif, "literature-map": literature_map_png}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.figures", description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(FIGURES))
    args = parser.parse_args(argv)
    print(FIGURES[args.figure]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
