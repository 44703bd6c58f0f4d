"""Neural networks, one per module."""

from .embeddings import SinusoidalEmbedding
from .conditional_mlp import ConditionalTimeMLP
from .conditional_unet import ConditionalUnet1D
from .mlp import TimeMLP
from .temporal_unet import TemporalUnet
from .temporal_value import TemporalValue

__all__ = ["ConditionalTimeMLP", "ConditionalUnet1D", "SinusoidalEmbedding", "TimeMLP", "TemporalUnet", "TemporalValue"]
