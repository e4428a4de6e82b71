"""Synthetic data (``magneto.sources.synthetic``): the built-in datasets, since nothing can be
downloaded.

``generator`` writes the ``nuswide`` profile in the NUS-WIDE raw layout (``scenes`` draws its
images, ``raw_layout`` writes its tables and defects); ``profiles`` names the benchmarks
(``image-only``, ``nuswide``, ``large-scale``), whose concepts (``vocab``), items (``plan``)
and images (``render``) ``benchmark`` writes; ``signal`` measures how much a tag-only model
could know. It may import ``magneto.data``, ``magneto.errors`` and ``magneto.sources.nuswide``.
"""
