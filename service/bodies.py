"""Request bodies into ``PredictRequest``s: both forms of ``/v1/summarize`` and the batch.

FastAPI does not read these bodies itself: one endpoint takes multipart and JSON, and each bad
input has its own status and code. The pydantic models of ``service.schemas`` still check
types, ranges and unknown fields (the same way for both media types); what they cannot check
with the status the API promises (no image, no tags, the limits from the settings) is checked
here first, in the order users run into it.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from magneto.infer.predictor import PredictRequest
from magneto.service.errors import ApiError, describe
from magneto.service.schemas import BatchJSON, SummarizeJSON, SummarizeMultipart
from magneto.service.settings import ServiceSettings

JSON = "application/json"
MULTIPART = "multipart/form-data"
Model = TypeVar("Model", bound=BaseModel)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request) -> Any:
    return parse_json(await request.body(), "the body")


def parse_json(text: bytes | str, what: str) -> Any:
    """``text`` parsed, or a 400 ``malformed_json``: never a 500, whatever a small body holds.

    ``json.loads`` raises more than ``JSONDecodeError``: ``RecursionError`` for arrays nested a
    few thousand deep, and ``ValueError`` for an integer over Python's limit on digits
    (``sys.get_int_max_str_digits``, 4300), both from bodies of a few kilobytes.
    """
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise ApiError(400, "malformed_json", f"{what} is nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise ApiError(400, "malformed_json", f"{what} is not valid JSON") from None


def _parse_int(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:
        limit = sys.get_int_max_str_digits()
        message = f"a number has {len(digits)} digits; the limit is {limit}"
        raise ApiError(400, "malformed_json", message) from None


def validate(
    model: type[Model], data: dict[str, Any], where: str = "", code: str = "invalid_request"
) -> Model:
    """``model`` from ``data``; an unknown field is ``invalid_request``, a bad value ``code``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        kind = "invalid_request" if first["type"] == "extra_forbidden" else code
        raise ApiError(422, kind, where + describe(first)) from None


def check_tags(raw: Any, settings: ServiceSettings, where: str = "") -> list[str]:
    """Stripped, non-empty tags within the limits (a string is split at commas)."""
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise ApiError(422, "invalid_tags", f"{where}tags must be a list of strings")
    if not all(_is_unicode(t) for t in raw):
        message = (
            f"{where}tags must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
        )
        raise ApiError(422, "invalid_tags", message)
    tags = [t.strip() for t in raw if t.strip()]
    if not tags:
        raise ApiError(400, "missing_tags", f"{where}no tags given")
    if len(tags) > settings.max_tags:
        message = f"{where}{len(tags)} tags; the limit is {settings.max_tags}"
        raise ApiError(422, "too_many_tags", message)
    long = next((t for t in tags if len(t) > settings.max_tag_length), None)
    if long is not None:
        message = f"{where}a tag has {len(long)} characters; the limit is {settings.max_tag_length}"
        raise ApiError(422, "tag_too_long", message)
    return tags


def _is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: JSON's ``"\\ud800"`` (and raw UTF-8-encoded
    surrogates, which ``json.loads`` lets through) give a ``str`` that cannot, and a tag is echoed
    in the response."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_base64(text: str, where: str = "") -> bytes:
    """The image bytes; a data URL (what browsers make) is accepted as well."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", f"{where}image_base64 is not valid base64") from None


def json_item(
    obj: Any, settings: ServiceSettings, needs_image: bool, where: str = ""
) -> PredictRequest:
    """One JSON item: ``{"image_base64", "tags", options...}``."""
    if not isinstance(obj, dict):
        raise ApiError(400, "malformed_json", f"{where}expected a JSON object")
    if not obj.get("image_base64") and needs_image:
        raise ApiError(400, "missing_image", f"{where}no image (image_base64) given")
    if "tags" not in obj or obj["tags"] in (None, "", []):
        raise ApiError(400, "missing_tags", f"{where}no tags given")
    parsed = validate(SummarizeJSON, {"image_base64": "", **obj}, where)
    image = decode_base64(parsed.image_base64, where) if parsed.image_base64 else None
    if image is not None and not image and needs_image:
        raise ApiError(400, "missing_image", f"{where}the image is empty")
    tags = check_tags(parsed.tags, settings, where)
    return PredictRequest(
        image, tags, parsed.threshold, parsed.top_k, parsed.min_keep, explain=parsed.explain
    )


class StrictMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, but a text field that is not valid in its charset (UTF-8
    unless the request names another) is refused, as JSON refuses it: Starlette falls back to
    latin-1, which turned invalid UTF-8 into garbled "unknown" tags."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except (UnicodeDecodeError, LookupError):
                raise MultiPartException(
                    f"field {part.field_name!r} is not valid {self._charset} text"
                ) from None
        super().on_part_end()


async def multipart_item(
    request: Request, settings: ServiceSettings, needs_image: bool
) -> PredictRequest:
    """The multipart form: an ``image`` file, ``tags`` and options, nothing else."""
    parser = StrictMultiPartParser(
        request.headers, request.stream(), max_files=1, max_fields=settings.max_tags + 8
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "malformed_multipart", exc.message) from None
    except ValueError:  # a UnicodeError from the codec a ``charset`` parameter names (punycode)
        message = "the form's parts cannot be decoded with the charset of its Content-Type"
        raise ApiError(400, "malformed_multipart", message) from None
    try:
        upload = form.get("image")
        if isinstance(upload, str) and upload:
            raise ApiError(400, "missing_image", "image must be a file upload")
        image = await upload.read() if isinstance(upload, UploadFile) else None
    finally:
        await form.close()  # the upload's spooled file (request.form() would do this for us)
    if not image and needs_image:
        raise ApiError(400, "missing_image", "no image file given (field 'image')")
    tags = check_tags(_form_tags(form), settings)
    others = {k: v or None for k, v in form.multi_items() if k not in ("image", "tags")}
    data = {**others, "image": image or b"", "tags": tags}  # an empty option means the default
    parsed = validate(SummarizeMultipart, data, code="invalid_option")
    return PredictRequest(
        image, tags, parsed.threshold, parsed.top_k, parsed.min_keep, explain=parsed.explain
    )


def _form_tags(form: FormData) -> Any:
    """Repeated ``tags`` fields, or one field holding a JSON array or a comma-separated list."""
    values = [v for v in form.getlist("tags") if isinstance(v, str)]
    if len(values) != 1:
        return values
    if not values[0].lstrip().startswith("["):
        return values[0]
    return parse_json(values[0], "tags (a JSON array)")


async def batch_items(
    request: Request, settings: ServiceSettings, needs_image: bool
) -> list[PredictRequest | ApiError]:
    """``{"items": [...]}``: each item as in ``json_item``.

    A bad body is raised; a bad item is returned as its error (prefixed ``items[i]: ``) in its
    place, so that it fails alone and the others are still scored.
    """
    if content_type(request) != JSON:
        raise ApiError(415, "unsupported_media_type", 'send application/json {"items": [...]}')
    body = await read_json(request)
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(400, "malformed_json", 'expected {"items": [...]} with at least one item')
    unknown = set(body) - set(BatchJSON.model_fields)
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown field {sorted(unknown)[0]!r}")
    if len(items) > settings.max_batch_items:
        message = f"{len(items)} items; the limit is {settings.max_batch_items}"
        raise ApiError(422, "too_many_items", message)
    return [_item_or_error(obj, settings, needs_image, i) for i, obj in enumerate(items)]


def _item_or_error(
    obj: Any, settings: ServiceSettings, needs_image: bool, index: int
) -> PredictRequest | ApiError:
    try:
        return json_item(obj, settings, needs_image, f"items[{index}]: ")
    except ApiError as exc:
        return exc
