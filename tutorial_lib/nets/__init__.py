"""Neural networks, one per module."""

from .embeddings import SinusoidalEmbedding
from .mlp import TimeMLP

__all__ = ["SinusoidalEmbedding", "TimeMLP"]
