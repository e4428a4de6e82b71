"""Service settings: flags of ``magneto serve`` and ``MAGNETO_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from magneto.infer.runtimes.calibration import Calibration


class ServiceSettings(BaseSettings):
    """Every field can be set as ``MAGNETO_<FIELD>`` (e.g. ``MAGNETO_API_KEY``) or a flag."""

    model_config = SettingsConfigDict(env_prefix="MAGNETO_", extra="ignore")

    checkpoint: Path | None = Field(None, description="the checkpoint to serve")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(
        None,
        description="require X-API-Key on /v1 routes; empty: no key; "
        "whitespace-only or padded keys are refused",
    )
    metrics_require_key: bool = Field(
        False, description="require X-API-Key on /metrics too (needs api_key)"
    )
    device: str = "auto"
    runtime: Literal["auto", "float32", "bf16", "onnx", "int8"] = Field(
        "auto",
        description="how the image trunk runs: auto times the runtimes this machine can run "
        "at start-up (cached per machine and checkpoint) and keeps the fastest whose "
        "decisions match float32's; a name forces one",
    )
    calibration: Path | None = Field(
        None,
        description="images int8 calibrates on, once per trunk: an annotation file (val.csv) "
        "or a folder",
    )
    calibration_images: Path | None = Field(
        None, description="folder the calibration file's image paths are under"
    )
    calibration_items: int = Field(256, ge=1, description="calibration images used")
    max_batch_size: int = Field(16, ge=1, le=1024, description="most items per forward pass")
    max_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long a batch may wait for requests that are already being decoded",
    )
    max_queue: int = Field(256, ge=1, description="items waiting for the model; beyond: 503")
    max_queue_wait_s: float = Field(
        2.0,
        gt=0,
        description="503 + Retry-After when a request's expected wait for the model (items "
        "ahead / measured throughput) is longer",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="close a connection whose request headers take longer"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="408 for a request whose body takes longer to arrive"
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        description="close a kept-alive connection idle this long; longer than the clients' "
        "own idle limits (httpx 5 s) and the longest Retry-After (60 s), so a client reusing "
        "one never races the server closing it",
    )
    max_connections: int = Field(
        512,
        ge=1,
        description="open connections (idle kept-alive ones too); beyond: 503 and "
        "the connection is closed",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="413 beyond this")
    max_pixels: int = Field(40_000_000, ge=1, description="413 for larger images")
    max_tags: int = Field(256, ge=1, description="most tags per item")
    max_tag_length: int = Field(100, ge=1, description="most characters per tag")
    max_batch_items: int = Field(64, ge=1, description="most items per /v1/summarize/batch")
    max_batch_pixels: int = Field(
        200_000_000,
        ge=1,
        description="most image pixels (summed from the headers) in one /v1/summarize/batch; "
        "beyond: 413 before anything is decoded",
    )
    preprocess_threads: int = Field(2, ge=1, description="threads decoding images")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins; CORS is off when empty"
    )
    graceful_timeout: float = Field(30.0, ge=0, description="seconds to finish in-flight work")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="the server's log level"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _check_api_key(cls, value: object) -> object:
        """Empty means no key (so ``MAGNETO_API_KEY=`` can switch it off); a key that is blank
        or padded with whitespace is refused rather than guessed at: blank would silently turn
        authentication off, and HTTP trims header values, so a padded key could never match."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        if text == "":
            return None
        if not text.strip():
            raise ValueError(
                "the key is only whitespace; give a real key, or an empty one for no key"
            )
        if text != text.strip():
            raise ValueError(
                "the key starts or ends with whitespace, which HTTP strips from header values "
                "(it could never match); remove it"
            )
        return value

    @model_validator(mode="after")
    def _metrics_key_needs_a_key(self) -> ServiceSettings:
        if self.metrics_require_key and self.api_key is None:
            raise ValueError("metrics_require_key needs an api_key to require")
        return self

    def calibration_images_set(self) -> Calibration | None:
        """The images the int8 runtime calibrates on, or None; a missing source raises."""
        if self.calibration is None:
            return None
        from magneto.infer.runtimes.calibration import Calibration  # numpy: not for --help

        return Calibration(self.calibration, self.calibration_images, self.calibration_items)
