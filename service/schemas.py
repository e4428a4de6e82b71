"""Request and response models: FastAPI validates responses with them, and /docs shows them.

The request bodies of ``/v1/summarize`` are read by ``service.bodies`` (one endpoint, two media
types), so ``request_body`` declares them in the OpenAPI document from these same models.

The document promises that every request it calls valid is accepted (schemathesis checks
this), so the request models carry what ``service.bodies`` refuses as well: no blank tags, no
empty image, and (from the settings, see ``with_limits``) the tag and item limits. Where the
exact rule cannot be written as JSON Schema, the schema says a little less than is accepted,
never more.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from magneto.service.settings import ServiceSettings

# What ``str.strip()`` removes (every character whose ``str.isspace()`` is true), as a JSON
# Schema regex class; ``\s`` differs (it lacks U+001C..U+001F and U+0085, and has U+FEFF).
SPACE = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A tag: at least one character that is not blank (blank tags are dropped, and no tags is a 400).
TAG = f"[^{SPACE}]"
# Tags as one comma-separated string: at least one part that is not blank.
TAG_LIST = f"[^{SPACE},]"
# One multipart ``tags`` field: one tag, not read as a JSON array or a comma-separated list,
# which is what the server does with a field that comes alone.
FORM_TAG = f"^[{SPACE}]*[^{SPACE},\\[][^,]*$"


class Options(BaseModel):
    threshold: float | None = Field(
        None, ge=0, le=1, description="keep tags scoring at least this; default: the model's"
    )
    top_k: int | None = Field(None, ge=1, description="keep at most this many (best first)")
    min_keep: int | None = Field(None, ge=0, description="keep at least this many (best first)")
    explain: bool = Field(
        False,
        description="also give each known tag its reason, its two stream scores and its "
        "attention over the image's region grid",
    )


# The constraints below that ``service.bodies`` checks itself (with its own statuses: a blank tag
# list is a 400 ``missing_tags``, not a 422) go in ``json_schema_extra``: they are written into the
# document, and pydantic does not enforce them a second time.


class SummarizeJSON(Options):
    """The JSON form of ``POST /v1/summarize`` (programs)."""

    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(
        ...,
        description="the image file, base64-encoded (a data: URL is accepted too)",
        json_schema_extra={
            "minLength": 1,
            "contentEncoding": "base64",
            "contentMediaType": "image/*",
        },
    )
    tags: list[str] | str = Field(
        ...,
        description="tags: a list, or one comma-separated string; blank tags are dropped, "
        "and at least one must be left",
        json_schema_extra={
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "contains": {"type": "string", "pattern": TAG},
                },
                {"type": "string", "minLength": 1, "pattern": TAG_LIST},
            ]
        },
    )


def _no_null_fields(schema: dict[str, Any]) -> None:
    """A form field cannot be null (it would be the text "null"): an option left out, or sent
    empty, takes its default, so the form's options are declared without the null."""
    for field in schema.get("properties", {}).values():
        variants = [v for v in field.get("anyOf", []) if v != {"type": "null"}]
        if len(variants) == 1 and len(field["anyOf"]) == 2:
            del field["anyOf"]
            field.pop("default", None)
            field.update(variants[0])


class SummarizeMultipart(Options):
    """The multipart form of ``POST /v1/summarize`` (curl users)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_fields)
    image: bytes = Field(..., description="the image file", json_schema_extra={"minLength": 1})
    tags: list[str] = Field(
        ...,
        description="one field per tag (repeat the field); a field that comes alone may instead "
        "hold a JSON array or a comma-separated list",
        json_schema_extra={"minItems": 1, "items": {"type": "string", "pattern": FORM_TAG}},
    )


class BatchJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[SummarizeJSON] = Field(..., min_length=1)


def with_limits(openapi: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """A copy of ``openapi`` with the served limits on tags and batch items.

    The limits are settings, so they are only known to the app: each request body's ``tags``
    gets ``maxItems``/``maxLength`` and the batch's ``items`` ``maxItems``. A comma-separated
    string of ``n`` characters holds at most ``(n + 1) // 2`` tags, hence its ``maxLength``.
    A copy, because FastAPI puts the routes' ``openapi_extra`` into the document as they are,
    and those are shared by every app of the process.
    """
    openapi = copy.deepcopy(openapi)
    longest_list = min(settings.max_tag_length, 2 * settings.max_tags - 1)

    def limit_tags(schema: dict[str, Any]) -> None:
        for variant in schema.get("anyOf", [schema]):
            if variant.get("type") == "array":
                variant["maxItems"] = settings.max_tags
                variant.setdefault("items", {})["maxLength"] = settings.max_tag_length
            elif variant.get("type") == "string":
                variant["maxLength"] = longest_list

    def limit(schema: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        if "tags" in properties:
            limit_tags(properties["tags"])
        items = properties.get("items", {})
        if items.get("type") == "array" and "properties" in items.get("items", {}):
            items["maxItems"] = settings.max_batch_items
            limit(items["items"])

    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):  # a path's own "parameters", "summary", ...
                continue
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                limit(media.get("schema", {}))
    return openapi


def request_body(content: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body itself: one model per media type."""
    return {
        "requestBody": {
            "required": True,
            "content": {kind: {"schema": _inline(model)} for kind, model in content.items()},
        }
    }


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with nested models written out: FastAPI does not register them."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


class TagResult(BaseModel):
    tag: str = Field(..., description="as the user spelled it")
    score: float | None = Field(..., description="null for tags the model does not know")
    kept: bool
    alpha: float | None = Field(..., description="gate: weight of the image stream")
    known: bool = Field(..., description="whether the model's vocabulary has the tag")
    # With ``explain: true`` only (left out of the answer otherwise):
    reason: str | None = Field(
        None,
        description="why it was kept or dropped: kept, kept_min_keep, dropped_threshold, "
        "dropped_top_k or unknown (explain)",
        examples=["dropped_top_k"],
    )
    tag_score: float | None = Field(None, description="the tag stream's probability (explain)")
    image_score: float | None = Field(
        None, description="the image stream's probability (explain; image models)"
    )
    attention: list[list[float]] | None = Field(
        None,
        description="where in the image this tag looked: the image stream's attention over "
        "the backbone's region grid (attention_grid rows of columns, averaged over heads, "
        "rounded to 4 decimals; each grid sums to 1; explain, image models)",
        examples=[
            [
                [0.02, 0.05, 0.04, 0.01],
                [0.03, 0.31, 0.22, 0.02],
                [0.02, 0.12, 0.09, 0.01],
                [0.01, 0.02, 0.02, 0.01],
            ]
        ],
    )


class ModelInfo(BaseModel):
    name: str
    version: str


class Timing(BaseModel):
    total_ms: float
    model_ms: float


class SummarizeResponse(BaseModel):
    kept_tags: list[str] = Field(..., description="kept tags, in the user's order and spelling")
    tags: list[TagResult]
    unknown_tags: list[str]
    threshold: float
    attention_grid: list[int] | None = Field(
        None,
        description="(rows, columns) of each tag's attention (explain; image models)",
        examples=[[4, 4]],
    )
    model: ModelInfo
    timing: Timing
    request_id: str


class ErrorBody(BaseModel):
    code: str
    message: str


class BatchItemError(BaseModel):
    """A batch item that could not be scored: it fails alone, the other items are answered."""

    index: int = Field(..., description="the item's position in items")
    status: int = Field(..., description="the HTTP status a single request would have got")
    error: ErrorBody = Field(..., description="as a single request's error; names items[index]")


class BatchResponse(BaseModel):
    results: list[SummarizeResponse | BatchItemError] = Field(
        ..., description="one entry per item, in order: its answer or its error"
    )
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str


class RuntimeDescription(BaseModel):
    """How the image trunk runs, and the evidence ``--runtime auto`` chose it on."""

    name: str = Field(..., description="float32, bf16, onnx or int8", examples=["int8"])
    requested: str = Field(..., description="the runtime asked for (auto, or a forced name)")
    source: str = Field(
        ...,
        description="measured (at this start-up), cached (an earlier start-up's measurement "
        "on this machine and checkpoint), forced, or only (nothing else could run)",
    )
    batch_size: int = Field(..., description="the batch size the timings are for")
    timings_ms: dict[str, float] = Field(..., description="median ms per batch, per runtime")
    batch1_ms: dict[str, float] = Field(..., description="median ms for one item, per runtime")
    agreement: dict[str, float] = Field(
        ..., description="share of keep/drop decisions equal to float32's, per runtime"
    )
    skipped: dict[str, str] = Field(..., description="runtimes left out, and why")


class ModelDescription(BaseModel):
    name: str
    version: str
    architecture: str
    backbone: str
    vocabulary_size: int
    threshold: float
    input_size: int
    uses_images: bool
    stage: str
    training_metrics: dict
    max_batch_size: int
    max_wait_ms: float
    runtime: RuntimeDescription


class VocabularyPage(BaseModel):
    """A page of the model's vocabulary: the tags it can judge (others come back unknown)."""

    total: int = Field(..., description="tags matching the prefix (all tags when none is given)")
    offset: int = Field(..., description="position of the first tag of this page")
    limit: int = Field(..., description="the most tags a page holds")
    tags: list[str] = Field(..., description="in case-insensitive alphabetical order")
