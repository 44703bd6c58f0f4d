"""tutorial_lib: the library behind the book "Diffusion models for control and planning"."""

__version__ = "0.1.0"
