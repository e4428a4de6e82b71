"""Training machinery (``magneto.train``): what every training-like stage shares.

It owns the stage harness (``stage``), the epoch sequence with checkpoint policy and exact
resume (``trainer``), what a run optimises with (``fit_setup``), the two loops (``loop``), the
losses (``loss_terms``, ``loss_registry``, ``total_loss``), metrics and threshold choice
(``metrics``), the run's outputs (``run_log``, ``curves``), the datasets a run builds on a
prepared directory (``run_data``) and the backbone feature cache (``feature_cache``). It may
import everything below it (``data``, ``model``, ``embeddings``, ``infer.checkpoint``,
``config``); nothing on the serving side imports it.
"""
