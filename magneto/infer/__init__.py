"""Inference (``magneto.infer``): from a checkpoint to kept tags.

It owns checkpoints (self-describing, digest-checked, loaded without unpickling code), the
preparation of requests (decode, tag lookup, collate: ``requests``), the :class:`Predictor`,
export to ONNX/TorchScript, and importing the original implementation's checkpoints. It may
import ``magneto.data``, ``magneto.model``, ``magneto.devices`` and ``magneto.errors``; never
training code, so that serving and the bulk job stay small.
"""
