"""Supervised training and evaluation: the paper's main stage, built on the ``magneto`` library."""

from training.evaluate import EvaluationResult, evaluate_checkpoint
from training.run import TrainResult, run_training

__all__ = ["EvaluationResult", "TrainResult", "evaluate_checkpoint", "run_training"]
