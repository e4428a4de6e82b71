"""Data (``magneto.data``): from files to tensors.

It owns the vocabulary and tag normalisation, annotation files, items encoded against the
vocabulary, image decoding and pipelines, TAD augmentation, the dataset with its image inputs
and padding, and the reader of cached backbone features. It may import ``magneto.errors`` and
``magneto.devices`` only: never the model, training, inference or service code.
"""
