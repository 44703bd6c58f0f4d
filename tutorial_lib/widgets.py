"""Live widgets for the notebooks, with callbacks that run without a browser.

A widget here is a slider over a few precomputed settings and a callback that draws one of them.
The callback is a plain function (``update(value) -> Figure``), so a test can call it for two
values headlessly; the slider is built only when ``ipywidgets`` is installed, and the notebooks
keep a static figure next to it for the website, which does not run Python.
"""

from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from .plotting import COLORS, plot_density

__all__ = ["choice_widget", "sample_cloud_drawer", "plan_drawer"]


def choice_widget(options: Sequence, draw: Callable, description: str = "value", value=None):
    """A slider over ``options`` that calls ``draw(option)``; returns ``(widget or None, update)``.

    ``update(option)`` draws one option (it raises ``ValueError`` for a value not among the
    options, naming them). ``widget`` is an ``ipywidgets.interactive`` to display, or ``None``
    without ``ipywidgets``.
    """
    options = list(options)
    if not options:
        raise ValueError("choice_widget needs at least one option")

    def update(option):
        if option not in options:
            raise ValueError(f"{description} = {option!r} is not one of the precomputed options {options}")
        return draw(option)

    try:
        import ipywidgets
    except ImportError:
        return None, update
    slider = ipywidgets.SelectionSlider(options=options, value=options[0] if value is None else value,
                                        description=description)
    return ipywidgets.interactive(update, option=slider), update


def sample_cloud_drawer(samples: dict, log_prob: Callable[[torch.Tensor], torch.Tensor], title: str,
                        lim: float = 3.0, show: bool = True):
    """``draw(key)``: the 2D points ``samples[key]: (N, 2)`` over the density ``exp(log_prob)``.

    ``title`` is formatted with ``key`` (e.g. ``"guidance scale {}"``). Returns the figure.
    """
    def draw(key):
        fig, ax = plt.subplots(figsize=(4, 4))
        plot_density(ax, log_prob, lim=lim)
        x = torch.as_tensor(samples[key])
        ax.scatter(*x.T, s=3, color=COLORS[3])
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title.format(key))
        if show:
            plt.show()
        return fig
    return draw


def plan_drawer(plans: dict, layout: str, start, goal, title: str, show: bool = True):
    """``draw(key)``: the maze ``layout`` with the plans ``plans[key]: (n, H, >= 2)`` (positions first),
    its start and goal marked; ``title`` formatted with ``key``. Returns the figure."""
    from .plotting import plot_plans

    def draw(key):
        fig, ax = plt.subplots(figsize=(4, 4))
        plot_plans(ax, layout, plans[key], start, goal)
        ax.set_title(title.format(key))
        if show:
            plt.show()
        return fig
    return draw
