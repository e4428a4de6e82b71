"""Checking a dataset's image files before it is prepared: which are missing, and (on request)
which fail to decode. Missing and broken images are returned for the caller to report, never
raised: one bad file costs one item."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from magneto.errors import ImageError

ImageCheck = Literal["none", "exists", "decode"]


def _decode_error(path: str) -> str | None:
    """Why the image at ``path`` fails to decode, or None when it decodes."""
    from magneto.data.images import decode_image  # the pipeline's imports: only to decode

    try:
        decode_image(path, min_side=64)
    except ImageError as exc:
        return str(exc)
    return None


def check_images(
    images: Sequence[tuple[str, str]],
    image_root: Path,
    mode: ImageCheck,
    workers: int,
    *,
    progress: bool = True,
) -> tuple[set[str], set[str]]:
    """Of ``(item id, image path relative to image_root)`` pairs, return the ids whose image is
    missing, and those whose image fails to decode (``mode="decode"``, in ``workers``
    processes)."""
    if mode == "none":
        return set(), set()
    missing = {item_id for item_id, rel in images if not (image_root / rel).is_file()}
    if mode == "exists":
        return missing, set()
    todo = [(item_id, rel) for item_id, rel in images if item_id not in missing]
    paths = [str(image_root / rel) for _, rel in todo]
    with ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            errors = pool.map(_decode_error, paths, chunksize=64)
        else:
            errors = map(_decode_error, paths)
        bar = tqdm(
            errors,
            total=len(paths),
            desc="decoding images",
            unit="img",
            leave=False,
            disable=not progress,
        )
        return missing, {item_id for (item_id, _), error in zip(todo, bar, strict=True) if error}
