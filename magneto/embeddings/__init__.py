"""Word vectors (``magneto.embeddings``): tag vectors that give the tag embedder a head start.

It owns training skip-gram Word2Vec on tag lists (``word_vectors``), reading and writing vector
files in word2vec and GloVe formats (``vector_files``), and copying vectors into a model's tag
embedder (``initialise``). It may import ``magneto.data`` and ``magneto.model``.
"""
