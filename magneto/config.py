"""Run configuration shared by the training and pre-training stages.

Configs are pydantic models, loaded from YAML and overridden field by field (the CLI turns
``--lr 0.1`` into the override ``{"lr": "0.1"}``); the resolved config is saved beside every
run. Every bad value is reported as one line naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from magneto.data.text_files import file_problem
from magneto.errors import ConfigError
from magneto.model.config import ModelConfig
from magneto.train.loss_names import LossName

C = TypeVar("C", bound=BaseModel)
LossParam = float | int | bool | str | None
PretrainSource = Literal["unlabeled", "train"]
PRETRAIN_SOURCES: tuple[PretrainSource, ...] = ("unlabeled", "train")
DEFAULT_BACKBONE_WEIGHTS = "imagenet"  # torchvision's; offline: a local file, or none


class RunConfig(BaseModel):
    """Everything a training-like run needs besides the stage's own options."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    # data
    data: str | None = Field(None, description="prepared dataset directory (train.csv, ...)")
    images: str | None = Field(None, description="image directory the CSVs' paths are under")
    out: str | None = Field(None, description="run directory")
    input_size: int = Field(112, ge=32, le=1024, description="image side fed to the backbone")
    max_len: int = Field(16, ge=1, description="l: most tags per item (TAD never exceeds it)")
    augment_images: bool = Field(True, description="random crops, flips and colour ops")
    on_bad_image: Literal["skip", "fail"] = "skip"
    # optimisation
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    length_buckets: bool = Field(False, description="batches of similar tag counts (less padding)")
    eval_batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["plateau", "cosine", "none"] = Field(
        "plateau", description="cosine: warmup_epochs of linear warm-up, then decay to 0"
    )
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    plateau_patience: int = Field(5, ge=0)
    warmup_epochs: int = Field(0, ge=0, description="cosine: epochs of linear lr warm-up")
    early_stopping: int | None = Field(
        None, ge=1, description="stop after N epochs without a better val F1"
    )
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm (none: off)")
    loss: LossName = Field("bce_dice", description="loss of the final output L_g")
    loss_params: dict[str, LossParam] = Field(
        default_factory=dict, description='its parameters, JSON (e.g. {"gamma": 2})'
    )
    aux_loss: LossName | None = Field(
        None, description="loss of the auxiliary outputs L_it, L_t (none: the same as --loss)"
    )
    aux_loss_params: dict[str, LossParam] | None = Field(
        None, description="its parameters, JSON (none: --loss-params when --aux-loss is none)"
    )
    # initialisation
    embeddings: str | None = Field(
        None,
        description="init the tag embedder: 'word2vec' (trained on the data's tags), "
        "a word2vec/GloVe vectors file, or 'none' (random, whatever the config says)",
    )
    # supervised training (magneto train)
    aux: bool = Field(True, description="auxiliary losses L_it + L_t besides L_g (paper eq. 5)")
    tad_add: float = Field(0.5, ge=0, description="TAD beta: added tags <= beta * #unimportant")
    tad_drop: float = Field(0.5, ge=0, le=1, description="TAD beta-hat: dropped tags bound")
    threshold: Literal["auto"] | float = Field(
        "auto", description="decision threshold: 'auto' picks the best per-item F1 on val"
    )
    init_from: str | None = Field(None, description="a pre-training checkpoint to start from")
    # outlier-detection pre-training (magneto pretrain)
    pretrain_epochs: int | None = Field(None, ge=1, description="default: epochs")
    pretrain_lr: float | None = Field(None, gt=0, description="default: lr")
    noise_ratio: float = Field(
        1.0, gt=0, description="pre-training adds k ~ U{1..max(1, ratio * #tags)} random tags"
    )
    pretrain_val_fraction: float = Field(0.1, gt=0, lt=1)
    pretrain_sources: list[PretrainSource] = Field(
        default_factory=lambda: list(PRETRAIN_SOURCES),
        description="prepared CSVs whose items (tags only) pre-training uses",
    )
    # runtime
    seed: int = 0
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    amp: Literal["auto", "bf16", "off"] = Field(
        "auto", description="auto: bf16 on CUDA, and for training steps on native-bf16 CPUs"
    )
    workers: int = Field(2, ge=0, description="DataLoader worker processes")
    feature_cache: bool = Field(
        False,
        description="compute frozen-backbone features once (needs freeze_backbone: all "
        "and augment_images: false)",
    )
    feature_cache_dir: str | None = Field(
        None,
        description="default: <data>/feature_cache, or <out>/feature_cache if <data> is read-only",
    )
    progress: bool = Field(True, description="progress bars")
    # experiment tracking
    tracking: Literal["none", "mlflow"] = Field(
        "none", description="also log the run to MLflow (pip install 'magneto-ets[mlflow]')"
    )
    tracking_uri: str | None = Field(
        None, description="the MLflow tracking URI [default: MLFLOW_TRACKING_URI, or MLflow's]"
    )
    experiment: str = Field("magneto", description="the MLflow experiment of the run")

    @model_validator(mode="before")
    @classmethod
    def _imagenet_by_default(cls, data: Any) -> Any:
        """A run's image trunk starts from ImageNet unless the config says otherwise: a frozen
        random trunk is what real photos must never get by accident (``backbone_weights:
        none`` asks for it, as the synthetic configs do)."""
        if not isinstance(data, dict):
            return data
        model = data.get("model")
        if model is None:
            return {**data, "model": {"backbone_weights": DEFAULT_BACKBONE_WEIGHTS}}
        if isinstance(model, dict) and "backbone_weights" not in model:
            return {**data, "model": {**model, "backbone_weights": DEFAULT_BACKBONE_WEIGHTS}}
        if isinstance(model, ModelConfig) and "backbone_weights" not in model.model_fields_set:
            weights = {"backbone_weights": DEFAULT_BACKBONE_WEIGHTS}
            return {**data, "model": model.model_copy(update=weights)}
        return data

    @field_validator(
        "grad_clip",
        "embeddings",
        "feature_cache_dir",
        "data",
        "images",
        "out",
        "init_from",
        "pretrain_epochs",
        "pretrain_lr",
        "early_stopping",
        "tracking_uri",
        mode="before",
    )
    @classmethod
    def _none_strings(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        from magneto.devices import check_device  # torch: only when a config is built

        return check_device(value)

    @field_validator("loss", "aux_loss", mode="before")
    @classmethod
    def _loss_name(cls, value: Any) -> Any:
        """``bce-dice`` and ``BCE_Dice`` name the same loss as ``bce_dice``."""
        if isinstance(value, str):
            value = value.strip().lower().replace("-", "_")
            return None if value in ("", "none", "null") else value
        return value

    @field_validator("loss_params", "aux_loss_params", mode="before")
    @classmethod
    def _json_dict(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().lower() in ("none", "null"):
                return None
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object: {exc.msg}") from None
        return value

    @field_validator("pretrain_sources", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )

    @model_validator(mode="after")
    def _losses_build(self) -> RunConfig:
        """A bad loss parameter is found now, not after the data has loaded."""
        from magneto.train.loss_registry import check_loss  # torch: only when a config is built

        check_loss(self.loss, self.loss_params)
        if self.aux_loss is not None:
            check_loss(self.aux_loss, self.aux_loss_params or {})
        elif self.aux_loss_params is not None:
            raise ValueError("aux_loss_params needs aux_loss (else --loss-params apply)")
        return self

    def losses(self) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
        """(main, auxiliary) loss names and parameters, the auxiliary defaulting to the main."""
        main = (self.loss, dict(self.loss_params))
        if self.aux_loss is None:
            return main, main
        return main, (self.aux_loss, dict(self.aux_loss_params or {}))

    def check_cache(self) -> None:
        """The cache is only exact when the trunk never changes and images are not augmented."""
        if not self.feature_cache:
            return
        if self.model.frozen_stages != 4:
            raise ConfigError(
                "feature_cache needs freeze_backbone: all (a trainable backbone "
                "changes its features every step)"
            )
        if self.augment_images:
            raise ConfigError(
                "feature_cache needs augment_images: false (augmented images differ every epoch)"
            )


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    problem = file_problem(path)
    if problem:
        where = f"not found: {path}" if problem == "not found" else f"{path} {problem}"
        raise ConfigError(f"config file {where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of field: value")
    return data


def validation_message(exc: ValidationError, source: str | None = None) -> str:
    """One line for the first invalid field (union members' messages joined)."""

    def field_path(loc: tuple) -> str:
        parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPES))]
        return ".".join(parts) or "config"

    errors = exc.errors()
    where = field_path(errors[0].get("loc", ()))
    same = [e for e in errors if field_path(e.get("loc", ())) == where]
    messages = list(dict.fromkeys(str(e.get("msg")) for e in same))
    value = errors[0].get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
    if any(word in where for word in _SECRET_WORDS):  # never echo a key (terminals, logs)
        shown = ""
    prefix = f"{source}: " if source else ""
    if where == "config":  # a check across fields: its message says what is wrong
        return prefix + "; or ".join(m.removeprefix("Value error, ") for m in messages)
    return f"{prefix}invalid {where}: {'; or '.join(messages)}{shown}"


_TYPES = {"int", "float", "str", "bool", "none", "dict", "list"}
_SECRET_WORDS = ("key", "secret", "password", "token")


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> C:
    """Defaults <- ``base`` <- YAML file <- dotted ``overrides``; one-line errors."""
    data: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if path is not None:
        for key, value in read_yaml(path).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return cls(**data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, str(path) if path else None)) from None


def save_config(config: BaseModel, path: str | Path) -> None:
    Path(path).write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
