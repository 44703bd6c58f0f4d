"""tutorial_lib: the library behind the book "Diffusion models for control and planning".

Map, from the top down; a module imports only from its own folder or the folders below it
(``tests/test_layers.py`` checks this, and that no imports go in a circle):

- ``bench.py``, ``train.py``, ``figures.py``: the commands (``python -m tutorial_lib.bench SUITE`` ...);
  ``widgets.py``: the notebooks' live sliders, with callbacks that run headlessly.
- ``experiments/``: one module per chapter experiment: ``recap`` (Chapter 1's measured claims), ``imitation``,
  ``offline_bandit``, ``compounding``, ``stability`` (Chapter 2), ``maze_eval``, ``maze_conditioning`` (Diffuser chapter),
  ``literature_model_based``, ``literature_hybrid``, ``literature_what_to_diffuse`` (Part 4), ``limitations_compute``, ``limitations_variance``,
  ``limitations_constraints``, ``limitations_shift`` with ``online_finetuning`` (Part 5).
- ``agents/``: the methods that act: ``diffuser`` (inpainting, loss, sampling) and ``diffuser_planner`` (PD tracking),
  ``trajectories`` (maze windows), ``pusht_policy`` (diffusion policy and BC on Push-T) and ``pusht_rollout`` (running and scoring them), ``mppi``, ``maze_bc``,
  ``mbd`` (model-based diffusion, with iterated MPPI and CEM), ``trajectory_optimizer`` (smoothing a grid path),
  ``constrained_sampling`` (guided and projected sampling against obstacles), ``goal_windows`` (the maze stream cut
  at the expert's goals), ``state_diffuser`` and ``inverse_dynamics`` (states only, Decision Diffuser),
  ``maze_action_policy`` (actions only, Diffusion Policy in the maze), ``pusht_distilled`` (a one-step student of the
  Push-T policy), ``safety_filter`` (a barrier filter on the maze ball's actions).
- ``diffusion/``: the generic machinery: ``ddpm`` (schedules, DDPM/DDIM), ``langevin``, ``score_matching``,
  ``guidance``, ``metrics``, ``toy_data`` (2D densities), ``toy_models`` (the 2D models of Chapter 1).
- ``plotting.py``: figures and animations (it draws the envs' mazes and obstacle task, so it stands above ``envs/``).
- ``nets/``: the networks, one per module (``TemporalUnet``: Diffuser's denoiser).
- ``envs/``: the simulated tasks (point-mass mazes, Push-T, the obstacle task) and their scripted experts.
- ``core/``: infrastructure: ``utils`` (device, seeding), ``checkpoint``, ``training`` (the loop), ``assets``
  (``data/`` and its manifest), ``recipes`` (the book's models, named by module path and imported when used),
  ``stats`` (95 % intervals), ``checks`` (``expect``: a claim within a measured band).
"""

from .core import __version__  # noqa: E402

from .core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from .diffusion.ddpm import GaussianDiffusion, cosine_beta_schedule, linear_beta_schedule, make_beta_schedule  # noqa: E402
from .diffusion.langevin import annealed_langevin_dynamics, geometric_sigmas, langevin_dynamics  # noqa: E402
from .diffusion.metrics import energy_distance, quality_ratio  # noqa: E402
from .diffusion.score_matching import NoiseConditionalScoreNet, dsm_loss  # noqa: E402
from .diffusion.toy_data import GaussianMixture, six_mode_mixture, song_ermon_mixture, swiss_roll  # noqa: E402
from .core.training import TrainConfig, train  # noqa: E402
from .core.recipes import load_pretrained, train_recipe  # noqa: E402
from .core.utils import get_device, manual_seed  # noqa: E402

__all__ = [
    "CheckpointError", "load_checkpoint", "save_checkpoint",
    "GaussianDiffusion", "cosine_beta_schedule", "linear_beta_schedule", "make_beta_schedule",
    "annealed_langevin_dynamics", "geometric_sigmas", "langevin_dynamics",
    "energy_distance", "quality_ratio",
    "NoiseConditionalScoreNet", "dsm_loss",
    "GaussianMixture", "six_mode_mixture", "song_ermon_mixture", "swiss_roll",
    "TrainConfig", "train", "load_pretrained", "train_recipe",
    "get_device", "manual_seed",
]
