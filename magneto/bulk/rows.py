"""One manifest row in, one result row out: shared by the local and the Ray bulk engines.

Every row of the manifest gets exactly one result row, in its place: the kept tags and every
tag's score, or an ``error`` naming the problem with its ``error_kind``:

- ``bad_row``: the row could not be read (invalid JSON, not UTF-8, no item id, ...);
- ``no_tags``: the row has no tags; ``no_known_tag``: none of them is in the vocabulary;
- ``duplicate_id``: the item id already appeared on an earlier row (that one is scored);
- ``missing_image``, ``bad_image``, ``image_too_large``: the image file is absent, does not
  decode, or has more pixels than allowed;
- ``invalid_request``: anything else the predictor refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magneto.bulk.manifest import ManifestRow
from magneto.data.annotations import build_annotation
from magneto.errors import DataError, ImageError
from magneto.infer.predictor import Prediction
from magneto.infer.requests import (
    ItemPreparer,
    PredictionError,
    PredictRequest,
    PreparedItem,
    failure_kind,
)


@dataclass(frozen=True)
class DecisionOptions:
    """Per-job overrides of the checkpoint's decision (None: the model's own)."""

    threshold: float | None = None
    top_k: int | None = None
    min_keep: int | None = None
    explain: bool = False  # each tag's reason and stream scores in its row
    explain_grid: bool = False  # ... and its attention grid (large: asked for apart)


def error_row(
    row: int, item_id: str | None, kind: str, message: str, tags: list[str] | None = None
) -> dict[str, Any]:
    """A row that could not be scored; ``tags`` (all unknown) only for ``no_known_tag``."""
    unknown = tags or []
    return {
        "item_id": item_id,
        "row": row,
        "kept_tags": [],
        "tags": [
            {"tag": t, "score": None, "kept": False, "alpha": None, "known": False} for t in unknown
        ],
        "unknown_tags": unknown,
        "threshold": None,
        "error_kind": kind,
        "error": message,
    }


def result_row(
    row: int, item_id: str, prediction: Prediction, options: DecisionOptions | None = None
) -> dict[str, Any]:
    options = options or DecisionOptions()
    explain = options.explain or options.explain_grid
    return {
        "item_id": item_id,
        "row": row,
        **prediction.as_dict(explain=explain, grid=options.explain_grid),
        "error_kind": None,
        "error": None,
    }


class RowPreparer:
    """Turns a manifest row into a prepared item, or into its error row."""

    def __init__(
        self,
        preparer: ItemPreparer,
        images: str | Path | None,
        duplicates: dict[int, int],
        options: DecisionOptions,
    ) -> None:
        self.preparer = preparer
        self.images = Path(images) if images is not None else None
        self.duplicates = duplicates
        self.options = options

    def __call__(self, source: Path, item: ManifestRow) -> PreparedItem | dict[str, Any]:
        raw_id = item.fields.get("item_id")
        item_id = str(raw_id).strip() if raw_id is not None else None
        where = f"row {item.row}"
        if item.problem:
            return error_row(item.row, item_id, "bad_row", f"{where}: {item.problem}")
        fields = {k: item.fields.get(k) for k in ("item_id", "tags", "image")}
        try:
            annotation = build_annotation(fields, source, None, require_labels=False)
        except DataError as exc:
            kind = "no_tags" if exc.problem.endswith("tags are empty") else "bad_row"
            return error_row(item.row, item_id, kind, f"{where}: {exc.problem}")
        item_id = annotation.item_id
        first = self.duplicates.get(item.row)
        if first is not None:
            message = f"{where}: item id {item_id!r} already appears on row {first}"
            return error_row(item.row, item_id, "duplicate_id", message)
        image = None
        if self.preparer.uses_images and self.images is not None:
            image = self.images / annotation.image_path
        request = PredictRequest(
            image,
            list(annotation.tags),
            self.options.threshold,
            self.options.top_k,
            self.options.min_keep,
            item_id=item_id,
            explain=self.options.explain or self.options.explain_grid,
        )
        try:
            prepared = self.preparer.prepare(request)
        except (ImageError, PredictionError) as exc:
            return error_row(item.row, item_id, failure_kind(exc), f"{where} ({item_id}): {exc}")
        except Exception as exc:  # one item's surprise is its own row, never the job's end
            message = f"{where} ({item_id}): could not be prepared ({type(exc).__name__}: {exc})"
            return error_row(item.row, item_id, "invalid_request", message)
        if not prepared.known:
            return error_row(
                item.row,
                item_id,
                "no_known_tag",
                f"{where} ({item_id}): none of its {len(prepared.texts)} tags is in the "
                "model's vocabulary",
                prepared.texts,
            )
        return prepared
