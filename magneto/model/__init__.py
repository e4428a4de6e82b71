"""MAGNeto and its baselines behind one builder and one config model."""

from magneto.model.architectures import (
    ARCHITECTURES,
    FeedForwardBaseline,
    ImageTagTransformer,
    Magneto,
    ModelOutput,
    TagModel,
    TagTransformer,
    build_model,
)
from magneto.model.config import ModelConfig

__all__ = [
    "ARCHITECTURES",
    "FeedForwardBaseline",
    "ImageTagTransformer",
    "Magneto",
    "ModelConfig",
    "ModelOutput",
    "TagModel",
    "TagTransformer",
    "build_model",
]
