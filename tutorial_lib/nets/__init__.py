"""Neural networks, one per module."""

from .embeddings import SinusoidalEmbedding
from .mlp import TimeMLP
from .temporal_unet import TemporalUnet

__all__ = ["SinusoidalEmbedding", "TimeMLP", "TemporalUnet"]
