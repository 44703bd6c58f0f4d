"""Neural networks, one per module."""

from .embeddings import SinusoidalEmbedding
from .conditional_mlp import ConditionalTimeMLP
from .mlp import TimeMLP

__all__ = ["ConditionalTimeMLP", "SinusoidalEmbedding", "TimeMLP"]
