"""Infrastructure that knows nothing of diffusion or of the book's tasks: device and seeding, checkpoints,
the training loop, the shipped files, the recipe registry (which names its models by module path), 95 % intervals
and the notebooks' tolerance checks."""

__version__ = "0.1.0"
