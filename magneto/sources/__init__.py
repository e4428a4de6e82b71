"""Sources (``magneto.sources``): where datasets come from, turned into prepared files.

It owns the NUS-WIDE raw layout and the paper's preparation (``train.csv``, ``val.csv``,
``vocab.csv``, ``unlabeled.csv``), and the synthetic benchmarks (:mod:`.synthetic`) that write
that same raw layout. It may import ``magneto.data`` and ``magneto.errors``: it writes files,
it never trains or serves.
"""
