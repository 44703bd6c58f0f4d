"""Infrastructure that knows nothing of diffusion or of the book's tasks: device and seeding, checkpoints,
the training loop, the shipped files and the recipe registry (which names its models by module path)."""

__version__ = "0.1.0"
