"""tutorial_lib: the library behind the book "Diffusion models for control and planning".

One idea per module:

- ``utils``: device choice and seeding.
- ``toy_data``: 2D data with known densities (Gaussian mixtures, the swiss roll).
- ``langevin``: Langevin and annealed Langevin dynamics.
- ``score_matching``: denoising score matching, the noise-conditional score network.
- ``ddpm``: noise schedules, the forward process, DDPM and DDIM sampling.
- ``nets``: the networks, one per module (``TemporalUnet``: Diffuser's denoiser).
- ``trajectories``: trajectory windows of the maze data, their layout and normalisation.
- ``diffuser``: Diffuser's inpainting, loss, sampling and its PD-tracking planner.
- ``metrics``: energy distance, sample-quality ratio.
- ``training``, ``checkpoint``: the training loop, saving and loading.
- ``recipes``, ``train``: the book's models and the command that trains them.
- ``assets``: the shipped files in ``data/`` and their manifest.
- ``plotting``: figures and animations.
- ``evaluation``, ``bench``: the measured experiments and the benchmark command.
- ``figures``: stand-alone figures of the book, one command each.
- ``imitation``: behaviour cloning and a diffusion policy on two-way demonstrations (Chapter 2).
- ``offline_bandit``: offline RL on a 2D bandit: regression Q, CQL, diffusion-steered (Chapter 2).
- ``envs``: the simulated tasks (point-mass mazes, Push-T, the obstacle task) and scripted experts.
"""

__version__ = "0.1.0"

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from .ddpm import GaussianDiffusion, cosine_beta_schedule, linear_beta_schedule, make_beta_schedule  # noqa: E402
from .langevin import annealed_langevin_dynamics, geometric_sigmas, langevin_dynamics  # noqa: E402
from .metrics import energy_distance, quality_ratio  # noqa: E402
from .score_matching import NoiseConditionalScoreNet, dsm_loss  # noqa: E402
from .toy_data import GaussianMixture, six_mode_mixture, song_ermon_mixture, swiss_roll  # noqa: E402
from .training import TrainConfig, train  # noqa: E402
from .recipes import load_pretrained, train_recipe  # noqa: E402
from .utils import get_device, manual_seed  # noqa: E402

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
