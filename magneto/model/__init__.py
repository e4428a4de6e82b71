"""The model (``magneto.model``): MAGNeto and its baselines behind one builder and one config.

It owns the architectures (MAGNeto, FF, TF-t, TF-it), their layers, the ResNet backbone and its
pretrained weights, packing of variable-length tag sets, and the one forward pass that
validation, evaluation and prediction share (``forward``). It may import ``magneto.data``,
``magneto.devices`` and ``magneto.errors``; nothing that trains or serves.
"""
