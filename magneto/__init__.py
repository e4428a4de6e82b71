"""MAGNeto: Extractive Tags Summarization.

The library's public face: the names a Python user needs, importable from ``magneto`` itself::

    from magneto import Predictor
    predictor = Predictor.from_checkpoint("runs/nus/best_f1.ckpt")
    prediction = predictor.predict("photo.jpg", ["beach", "sky", "dog"])

Each name lives in the subpackage that owns it (``magneto.infer``, ``magneto.model``, ...); it is
imported on first use, so ``import magneto.errors`` or ``magneto --help`` does not pay for
PyTorch. The library holds no web or command-line code: ``magneto.training``,
``magneto.pretraining``, ``magneto.service`` and ``magneto.cli`` build on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # inference
    "Predictor": "magneto.infer.predictor",
    "Prediction": "magneto.infer.predictor",
    "TagScore": "magneto.infer.predictor",
    "PredictRequest": "magneto.infer.requests",
    "ItemFailure": "magneto.infer.requests",
    "PredictionError": "magneto.infer.requests",
    "Checkpoint": "magneto.infer.checkpoint",
    "load_checkpoint": "magneto.infer.checkpoint",
    "save_checkpoint": "magneto.infer.checkpoint",
    # model
    "build_model": "magneto.model.architectures",
    "ModelConfig": "magneto.model.config",
    "ModelOutput": "magneto.model.architectures",
    "TagModel": "magneto.model.architectures",
    # configuration
    "RunConfig": "magneto.config",
    "load_config": "magneto.config",
    # data
    "Vocabulary": "magneto.data.vocabulary",
    "TagAugmentation": "magneto.data.augment",
    "read_annotations": "magneto.data.annotation_files",
    # losses
    "build_loss": "magneto.train.loss_registry",
    # errors
    "MagnetoError": "magneto.errors",
}

__all__ = [
    "Checkpoint",
    "ItemFailure",
    "MagnetoError",
    "ModelConfig",
    "ModelOutput",
    "PredictRequest",
    "Prediction",
    "PredictionError",
    "Predictor",
    "RunConfig",
    "TagAugmentation",
    "TagModel",
    "TagScore",
    "Vocabulary",
    "__version__",
    "build_loss",
    "build_model",
    "load_checkpoint",
    "load_config",
    "read_annotations",
    "save_checkpoint",
]

if TYPE_CHECKING:
    from magneto.config import RunConfig, load_config
    from magneto.data.annotation_files import read_annotations
    from magneto.data.augment import TagAugmentation
    from magneto.data.vocabulary import Vocabulary
    from magneto.errors import MagnetoError
    from magneto.infer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from magneto.infer.predictor import Prediction, Predictor, TagScore
    from magneto.infer.requests import ItemFailure, PredictionError, PredictRequest
    from magneto.model.architectures import ModelOutput, TagModel, build_model
    from magneto.model.config import ModelConfig
    from magneto.train.loss_registry import build_loss


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'magneto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
