"""Outlier-detection pre-training (``magneto.pretraining``, paper section 5.2).

It owns the pre-training stage (``run``) and the random-tag noise it learns to reject
(``noise``). It builds on the library (``magneto.train`` and below), never on
``magneto.training`` or ``magneto.service``.
"""

from magneto.pretraining.run import PretrainResult, run_pretraining

__all__ = ["PretrainResult", "run_pretraining"]
