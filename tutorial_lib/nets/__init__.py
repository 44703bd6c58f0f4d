"""Neural networks, one per module."""

from .embeddings import SinusoidalEmbedding
from .conditional_mlp import ConditionalTimeMLP
from .mlp import TimeMLP
from .temporal_unet import TemporalUnet

__all__ = ["ConditionalTimeMLP", "SinusoidalEmbedding", "TimeMLP", "TemporalUnet"]
