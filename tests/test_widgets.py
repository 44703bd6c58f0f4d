"""The notebooks' widgets: each callback runs headlessly for two values and draws what it says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.diffusion.toy_data import six_mode_mixture  # noqa: E402
from tutorial_lib.widgets import choice_widget, sample_cloud_drawer  # noqa: E402

MIXTURE = six_mode_mixture(scale=0.5)


@pytest.mark.parametrize("title, options", [("guidance scale {}", [0.0, 3.0]), ("w = {:g}", [1.0, 4.0])])
def test_the_sample_cloud_widgets_draw_each_setting(title, options):
    """The two widgets of conditioning_2d: guidance scale and classifier-free weight."""
    samples = {k: torch.randn(50, 2, generator=torch.Generator().manual_seed(i)) for i, k in enumerate(options)}
    widget, update = choice_widget(options, sample_cloud_drawer(samples, MIXTURE.log_prob, title, show=False),
                                   description="setting")
    for k in options:
        fig = update(k)
        ax = fig.axes[0]
        assert ax.get_title() == title.format(k)
        points = ax.collections[-1].get_offsets()
        assert points.shape == (50, 2) and torch.allclose(torch.as_tensor(points, dtype=torch.float32), samples[k])
        plt.close(fig)
    with pytest.raises(ValueError, match="precomputed options"):
        update(99.0)
    if widget is not None:                          # ipywidgets installed: the slider offers exactly the options
        assert list(widget.children[0].options) == options


def test_choice_widget_needs_options():
    with pytest.raises(ValueError, match="at least one option"):
        choice_widget([], print)


def test_the_plan_widget_draws_each_step_count():
    """diffuser_maze's slider over DDIM steps: one plan per setting over the maze."""
    from tutorial_lib.widgets import plan_drawer

    plans = {k: np.stack([np.linspace([3.0, 1.0], [1.0 + 0.1 * k, 1.0], 10)]) for k in (1, 16)}
    widget, update = choice_widget(list(plans), plan_drawer(plans, "umaze", [3.0, 1.0], [1.0, 1.0],
                                                            "DDIM {} steps", show=False))
    for k in plans:
        fig = update(k)
        ax = fig.axes[0]
        assert ax.get_title() == f"DDIM {k} steps"
        drawn = ax.lines[-1].get_xydata()                     # plotted as (y, x), see plotting.maze_xy
        np.testing.assert_allclose(drawn[:, ::-1], plans[k][0])
        plt.close(fig)
