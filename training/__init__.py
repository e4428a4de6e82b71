"""Supervised training and evaluation (``magneto.training``): the paper's main stage.

It owns the supervised stage (``run``: TAD, auxiliary losses, the threshold), its datasets
(``data``), fine-tuning from a pre-training checkpoint (``transfer``) and ``magneto evaluate``
(``evaluate``). It builds on the library (``magneto.train`` and below), never on
``magneto.pretraining`` or ``magneto.service``.
"""

from magneto.training.evaluate import EvaluationResult, evaluate_checkpoint
from magneto.training.run import TrainResult, run_training

__all__ = ["EvaluationResult", "TrainResult", "evaluate_checkpoint", "run_training"]
