"""The book's stand-alone figures, each made by one command (no notebook needed).

    python -m tutorial_lib.figures annealed-langevin   # -> book/figures/annealed_langevin.gif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

__all__ = ["annealed_langevin_gif"]

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


FIGURES = {"annealed-langevin": annealed_langevin_gif}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.figures", description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(FIGURES))
    args = parser.parse_args(argv)
    print(FIGURES[args.figure]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
