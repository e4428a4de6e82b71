"""Reading NUS-WIDE's raw layout: the concept list, the image lists, the tag and label
matrices, and the image files themselves.

Kept apart from :mod:`magneto.sources.nuswide`, which applies the paper's filters and writes the
prepared files, so that the facts of the raw format (Windows separators, row-aligned 0/1
files, ``Concepts81.txt`` in either of two places) stand in one place. Malformed files raise
:class:`DataError` naming the file and line. Checking the image files is
:mod:`magneto.sources.image_files`'s job (shared with your own data's preparation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from magneto.errors import DataError
from magneto.sources.image_files import ImageCheck, check_images

__all__ = ["ImageCheck", "RawRow", "check_images"]


@dataclass
class RawRow:
    """One line of ``Imagelist.txt`` with its tags and labels."""

    row: int
    item_id: str
    image: str  # "<category>/<NNNN>_<id>.jpg", relative to Flickr/
    tags: tuple[int, ...]  # concept indices, in concept order
    important: tuple[int, ...]


# -- the lists and matrices --------------------------------------------------------------------


def find_concepts_file(root: Path) -> Path:
    for candidate in (root / "ConceptsList" / "Concepts81.txt", root / "Concepts81.txt"):
        if candidate.is_file():
            return candidate
    raise DataError(
        root / "ConceptsList" / "Concepts81.txt",
        None,
        "Concepts81.txt not found (looked in ConceptsList/ and at the root)",
    )


def read_concepts(root: Path) -> list[str]:
    path = find_concepts_file(root)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(path, None, "no concept names")
    if len(set(names)) != len(names):
        raise DataError(path, None, "a concept name appears twice")
    return names


def parse_image_line(line: str) -> tuple[str, str]:
    """``actor\\0001_2124494179.jpg`` -> (item id ``2124494179``, ``actor/0001_2124494179.jpg``)."""
    parts = PureWindowsPath(line.strip()).parts  # accepts both \\ and / separators
    if not parts:
        raise ValueError("empty line")
    name = parts[-1]
    item_id = name.rsplit("_", 1)[-1].rsplit(".", 1)[0]
    if not item_id:
        raise ValueError(f"no item id in {line.strip()!r}")
    rel = "/".join(parts[-2:]) if len(parts) >= 2 else name
    return item_id, rel


def read_image_list(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(path, None, "image list not found")
    rows: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(parse_image_line(line))
            except ValueError as exc:
                raise DataError(path, number, str(exc)) from None
    return rows


def _read_01_matrix(path: Path, rows: int, cols: int) -> np.ndarray:
    """Read a whitespace-separated 0/1 matrix, naming the first bad line if it is malformed."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    numbered = [(i, ln.split()) for i, ln in enumerate(lines, start=1) if ln.strip()]
    if len(numbered) != rows:
        raise DataError(path, None, f"has {len(numbered)} rows but Imagelist.txt has {rows}")
    for number, values in numbered:
        if len(values) != cols:
            raise DataError(path, number, f"expected {cols} values, found {len(values)}")
    tokens = np.array([v for _, values in numbered for v in values])
    ones, zeros = tokens == "1", tokens == "0"
    if not bool((ones | zeros).all()):
        bad = int(np.flatnonzero(~(ones | zeros))[0]) // cols
        raise DataError(path, numbered[bad][0], "values must be 0 or 1")
    return ones.reshape(rows, cols)


def read_raw_rows(root: Path, concepts: Sequence[str]) -> list[RawRow]:
    images = read_image_list(root / "ImageList" / "Imagelist.txt")
    n = len(images)
    tags = _read_01_matrix(root / "NUS_WID_Tags" / "AllTags81.txt", n, len(concepts))
    labels = np.zeros((n, len(concepts)), dtype=bool)
    label_dir = root / "Groundtruth" / "AllLabels"
    for c, concept in enumerate(concepts):
        labels[:, c] = _read_01_matrix(label_dir / f"Labels_{concept}.txt", n, 1)[:, 0]
    return [
        RawRow(
            row=i,
            item_id=item_id,
            image=rel,
            tags=tuple(np.flatnonzero(tags[i]).tolist()),
            important=tuple(np.flatnonzero(labels[i]).tolist()),
        )
        for i, (item_id, rel) in enumerate(images)
    ]
