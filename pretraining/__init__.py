"""Outlier-detection pre-training (paper section 5.2), built on the ``magneto`` library."""

from pretraining.run import PretrainResult, run_pretraining

__all__ = ["PretrainResult", "run_pretraining"]
