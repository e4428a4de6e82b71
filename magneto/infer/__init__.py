"""Inference (``magneto.infer``): from a checkpoint to kept tags.

It owns checkpoints (self-describing, digest-checked, loaded without unpickling code), the
preparation of requests (decode, tag lookup, collate: ``requests``), the :class:`Predictor`,
the runtimes that run its image trunk and the ``auto`` choice among them (``runtimes``),
export to ONNX/TorchScript and int8 ONNX (``onnx_io`` holds the optional ONNX packages), and
importing the original implementation's checkpoints. It may
import ``magneto.data``, ``magneto.model``, ``magneto.devices`` and ``magneto.errors``; never
training code, so that serving and the bulk job stay small.
"""
