"""Request and response models: FastAPI validates responses with them, and /docs shows them.

The request bodies of ``/v1/summarize`` are read by ``service.bodies`` (one endpoint, two media
types), so ``request_body`` declares them in the OpenAPI document from these same models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Options(BaseModel):
    threshold: float | None = Field(
        None, ge=0, le=1, description="keep tags scoring at least this; default: the model's"
    )
    top_k: int | None = Field(None, ge=1, description="keep at most this many (best first)")
    min_keep: int | None = Field(None, ge=0, description="keep at least this many (best first)")


class SummarizeJSON(Options):
    """The JSON form of ``POST /v1/summarize`` (programs)."""

    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(..., description="the image file, base64-encoded")
    tags: list[str] | str = Field(..., description="tags: a list, or one comma-separated string")


class SummarizeMultipart(Options):
    """The multipart form of ``POST /v1/summarize`` (curl users)."""

    model_config = ConfigDict(extra="forbid")
    image: bytes = Field(..., description="the image file")
    tags: list[str] = Field(
        ..., description="repeat the field, or send one JSON array / comma-separated string"
    )


class BatchJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[SummarizeJSON] = Field(..., min_length=1)


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
