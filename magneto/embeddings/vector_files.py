"""Word-vector files: word2vec binary, word2vec text and GloVe text, told apart by content.

People rename files (``vectors.txt`` that is really binary, GloVe saved as ``.vec``), so the
format is read from the bytes, not the suffix: a word2vec file starts with a ``COUNT DIM``
header line, then either text rows ``word f1 ... fDIM`` (text) or ``word `` + DIM float32s
(binary); a GloVe file has no header, its first line is already a text row. gensim's native
``.kv``/``.model`` files are pickles and are never loaded (like checkpoints, loading a file
must not run code from it).

Tags become one token each: the normalised tag with spaces as ``_`` (the word2vec phrase
convention, ``new york`` -> ``new_york``), because both word2vec formats end a word at a space.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from gensim.models import KeyedVectors

from magneto.data.text_files import file_problem
from magneto.data.vocabulary import normalize_tag
from magneto.errors import MagnetoError

VectorFormat = Literal["word2vec-binary", "word2vec-text", "glove"]

# What `save_vectors` writes for each suffix; anything else is refused (see `format_for_suffix`).
SUFFIX_FORMATS: dict[str, VectorFormat] = {
    ".bin": "word2vec-binary",
    ".txt": "word2vec-text",
    ".vec": "word2vec-text",
}
DESCRIPTIONS: dict[VectorFormat, str] = {
    "word2vec-binary": "word2vec binary",
    "word2vec-text": "word2vec text",
    "glove": "GloVe text",
}
_MAX_LINE = 1 << 20  # a 300-d text row is ~4 KB; a "line" this long is not a text row
_HEADER = re.compile(rb"\s*(\d+)\s+(\d+)\s*")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def tag_token(tag: str) -> str:
    """The token a tag is stored under: normalised, inner spaces as ``_``."""
    return normalize_tag(tag).replace(" ", "_")


def format_for_suffix(path: str | Path) -> VectorFormat:
    """The format `save_vectors` writes to ``path`` (by its suffix); ValueError for others."""
    suffix = Path(path).suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix in (".kv", ".model"):
        raise ValueError(
            f"{path}: gensim's native {suffix} format is a pickle, which magneto does not "
            "load; use .bin (word2vec binary) or .txt/.vec (word2vec text)"
        )
    raise ValueError(f"{path}: the name must end in .bin (word2vec binary) or .txt/.vec (text)")


def _text_row_size(line: bytes) -> int | None:
    """How many numbers follow the word on a text row, or None if it is not one."""
    try:
        parts = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return None
    if len(parts) < 2:
        return None
    try:
        [float(p) for p in parts[1:]]
    except ValueError:
        return None
    return len(parts) - 1


def detect_format(path: str | Path) -> VectorFormat:
    """Recognise a vectors file by its first bytes; MagnetoError naming the file if none fits."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        where = f"not found: {path}" if problem == "not found" else f"{path} {problem}"
        raise MagnetoError(f"word vectors file {where}")
    with path.open("rb") as handle:
        first = handle.readline(_MAX_LINE)
        second = handle.readline(_MAX_LINE)
    if not first.strip():
        raise MagnetoError(f"{path}: empty, not a word vectors file")
    for magic, name in _COMPRESSED.items():
        if first.startswith(magic):
            raise MagnetoError(f"{path}: {name}-compressed; decompress it first")
    header = _HEADER.fullmatch(first)
    if header is not None:
        count, dim = int(header.group(1)), int(header.group(2))
        if count == 0 or dim == 0:
            raise MagnetoError(f"{path}: the header says {count} vectors of size {dim}")
        if not second:
            raise MagnetoError(f"{path}: has a word2vec header but no vectors")
        if _text_row_size(second) == dim:
            return "word2vec-text"
        if b" " in second and _text_row_size(second) is None:
            return "word2vec-binary"
        raise MagnetoError(
            f"{path}: has a word2vec header ({count} vectors of size {dim}) but its first row "
            f"is neither a text row of {dim} numbers nor binary"
        )
    if _text_row_size(first) is not None:
        return "glove"
    raise MagnetoError(
        f"{path}: not a word vectors file (expected word2vec binary or text, or GloVe text)"
    )


def load_vectors(path: str | Path) -> KeyedVectors:
    """Load word2vec binary/text or GloVe text, whatever the file is called."""
    path = Path(path)
    fmt = detect_format(path)
    try:
        vectors = KeyedVectors.load_word2vec_format(
            str(path), binary=fmt == "word2vec-binary", no_header=fmt == "glove"
        )
    except (ValueError, EOFError, UnicodeError, OSError, AssertionError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MagnetoError(f"{path}: not a valid {DESCRIPTIONS[fmt]} file ({reason})") from None
    if len(vectors) == 0:
        raise MagnetoError(f"{path}: holds no vectors")
    return vectors


def save_vectors(vectors: KeyedVectors, path: str | Path) -> VectorFormat:
    """Write in the format the suffix names (`format_for_suffix`), via a temporary file so an
    interrupted write never leaves half a file; return the format."""
    path = Path(path)
    fmt = format_for_suffix(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        vectors.save_word2vec_format(str(tmp), binary=fmt == "word2vec-binary")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return fmt


def key_finder(vectors: KeyedVectors) -> Callable[[str], str | None]:
    """A lookup from a vocabulary tag to the key of its vector (or None).

    Keys are compared normalised; a tag with spaces also matches its ``_`` token. When two keys
    normalise alike (``Sky``, ``sky``) the first wins: word2vec files list frequent words first.
    """
    lookup: dict[str, str] = {}
    for key in vectors.index_to_key:
        lookup.setdefault(normalize_tag(key), key)

    def find(tag: str) -> str | None:
        norm = normalize_tag(tag)
        return lookup.get(norm) or lookup.get(norm.replace(" ", "_"))

    return find
