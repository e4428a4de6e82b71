"""The bulk job (``magneto.bulk``): a whole library, streamed, resumable, one row per item.

It owns manifests read in shards (``manifest``), result rows (``rows``), resumable result files
(``results``), the job description both engines share (``job``), the local engine (``local``),
the Ray engine (``ray_engine``) and the choice between them (``engines``). It may import
``magneto.infer`` and ``magneto.data``; never training code. The engines never import each
other.
"""
