"""The model's configuration: one pydantic model for MAGNeto and its baselines."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Architecture = Literal["magneto", "ff", "tf-t", "tf-it"]
BackboneName = Literal["resnet18", "resnet50"]


class ModelConfig(BaseModel):
    """Hyper-parameters of the network (defaults: the paper's NUS-WIDE setting)."""

    model_config = ConfigDict(extra="forbid")

    architecture: Architecture = Field(
        "magneto", description="magneto, or a baseline: ff, tf-t (tags only), tf-it (image+tags)"
    )
    vocab_size: int | None = Field(
        None, gt=0, description="number of tags (index vocab_size is padding); set from the data"
    )
    d_model: int = Field(128, gt=0)
    heads: int = Field(4, gt=0)
    tag_layers: int = Field(2, ge=1, description="M: Transformer layers of the tag stream")
    image_layers: int = Field(1, ge=1, description="N: Transformer layers of the image stream")
    d_ff: int = Field(512, gt=0, description="feed-forward width of the Transformer layers")
    gate_d_ff: int | None = Field(None, gt=0, description="hidden width of the gate; default d_ff")
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    tag_bias: bool = Field(
        False,
        description="add a learned per-tag logit to every per-tag output, started at the "
        "log-odds of the tag's smoothed importance rate in train.csv (tag-prior's score)",
    )
    gating: bool = Field(
        True, description="False builds the gate-less two-output model used for pre-training"
    )
    backbone: BackboneName = "resnet18"
    backbone_weights: str | None = Field(
        None, description="none, 'imagenet' (torchvision download) or a local state-dict file"
    )
    freeze_backbone: Literal["all", "none"] | int = Field(
        "all", description="'all', 'none', or k: freeze the stem and the first k residual stages"
    )

    @field_validator("backbone_weights")
    @classmethod
    def _none_string(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("freeze_backbone")
    @classmethod
    def _freeze_range(cls, value: str | int) -> str | int:
        if isinstance(value, int) and not 0 <= value <= 4:
            raise ValueError("freeze_backbone must be 'all', 'none' or an integer from 0 to 4")
        return value

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self

    @property
    def uses_images(self) -> bool:
        return self.architecture in ("magneto", "tf-it")

    @property
    def frozen_stages(self) -> int | None:
        """None: nothing frozen; k: stem + first k stages frozen (4 = whole backbone)."""
        if self.freeze_backbone == "none":
            return None
        if self.freeze_backbone == "all":
            return 4
        return int(self.freeze_backbone)
