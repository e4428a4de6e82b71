"""ResNet image feature extractor: trunk without avgpool/fc, 1x1 conv to d_model, BatchNorm.

Frozen parts of the trunk run without autograd and stay in eval mode (their BatchNorm
statistics are part of what is frozen), so a frozen backbone costs one plain forward pass.

Without pretrained weights the trunk starts with zero-initialised residual branches
(torchvision's ``zero_init_residual``, the from-scratch ResNet init of Goyal et al.): each
block starts as its shortcut, so even a frozen random trunk passes colour and layout through
instead of scrambling them. Loaded weights replace this init entirely.
"""

from __future__ import annotations

import urllib.error
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from magneto.errors import WeightsError, refusal

_RESNETS = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2, 2048),
}
STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


def imagenet_weights_url(name: str) -> str:
    return _RESNETS[name][1].url


def _download_imagenet(name: str) -> dict[str, torch.Tensor]:
    weights = _RESNETS[name][1]
    try:
        return weights.get_state_dict(progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"could not download the ImageNet weights for {name} ({reason}); on a machine "
            f"without internet, fetch {weights.url} elsewhere and pass the file instead: "
            f"--backbone-weights /path/to/{Path(weights.url).name} (or --backbone-weights none "
            "for a random trunk, on purpose: synthetic images only)"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (no arbitrary unpickling); unwraps common checkpoint layouts."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then rejects
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise WeightsError(refusal(path, exc, "backbone weights")) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_trunk(name: str, weights: str | None) -> tuple[nn.Sequential, int]:
    """ResNet without avgpool and fc, optionally loaded with ImageNet or local weights."""
    if name not in _RESNETS:
        raise WeightsError(f"unknown backbone {name!r}; choose one of {', '.join(_RESNETS)}")
    factory, _, channels = _RESNETS[name]
    resnet = factory(weights=None, zero_init_residual=True)
    if weights:
        state = _download_imagenet(name) if weights == "imagenet" else load_state_dict_file(weights)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            result = resnet.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise WeightsError(
                f"weights {weights} do not fit {name}: {str(exc).splitlines()[1].strip()}"
            ) from None
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing or result.unexpected_keys:
            raise WeightsError(
                f"weights {weights} do not fit {name}: {len(missing)} missing keys "
                f"(e.g. {missing[:2]}), {len(result.unexpected_keys)} unexpected keys "
                f"(e.g. {result.unexpected_keys[:2]})"
            )
    trunk = nn.Sequential(
        nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool),
        resnet.layer1,
        resnet.layer2,
        resnet.layer3,
        resnet.layer4,
    )
    return trunk, channels


class ImageFeatureExtractor(nn.Module):
    """Image -> ``(B, N*N, d_model)`` region features."""

    def __init__(
        self, backbone: str, d_model: int, weights: str | None, frozen_stages: int | None
    ) -> None:
        super().__init__()
        self.trunk, channels = build_trunk(backbone, weights)
        self.conv = nn.Conv2d(channels, d_model, kernel_size=1, bias=True)
        self.bn = nn.BatchNorm2d(d_model)
        # Number of leading trunk modules (stem + k stages) that are frozen.
        self.frozen_modules = 0 if frozen_stages is None else frozen_stages + 1
        self.cpu_bf16 = False  # see use_cpu_bf16
        for module in self.trunk[: self.frozen_modules]:
            for param in module.parameters():
                param.requires_grad_(False)

    @property
    def fully_frozen(self) -> bool:
        return self.frozen_modules == len(self.trunk)

    def use_cpu_bf16(self, enabled: bool = True) -> None:
        """Run the trunk's gradient-free part in bf16 with channels_last on the CPU.

        Gradient-free: the frozen prefix when training, the whole trunk when no gradient is
        being recorded (inference). The trunk is ~95 % of the model's time; its output is
        float32 again, so everything after it is unchanged.
        """
        self.cpu_bf16 = enabled
        if enabled:
            self.trunk.to(memory_format=torch.channels_last)

    def _run(self, modules: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if not (self.cpu_bf16 and x.device.type == "cpu" and len(modules)):
            return modules(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = modules(x.contiguous(memory_format=torch.channels_last))
        return out.float()

    def train(self, mode: bool = True) -> ImageFeatureExtractor:
        super().train(mode)
        for module in self.trunk[: self.frozen_modules]:
            module.eval()
        return self

    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone feature maps ``(B, C, H', W')``; the frozen prefix runs without autograd."""
        frozen = self.frozen_modules if torch.is_grad_enabled() else len(self.trunk)
        x = images
        if frozen:
            with torch.no_grad():
                x = self._run(self.trunk[:frozen], x)
        for module in self.trunk[frozen:]:
            x = module(x)
        return x

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Feature maps -> regions ``(B, H'*W', d_model)``.

        The 1x1 convolution runs as a matrix multiply over the ``B*H'*W'`` regions, and the
        BatchNorm over the same rows (as ``(rows, C, 1, 1)``, the same per-channel statistics):
        the same computation, but on the small maps here (4x4 at 112 px) the CPU convolution
        and its backward cost about half again as much."""
        batch, channels, height, width = features.shape
        regions = features.flatten(2).transpose(1, 2).reshape(-1, channels)
        projected = F.linear(regions, self.conv.weight.flatten(1), self.conv.bias)
        out = self.bn(projected.view(*projected.shape, 1, 1))
        return out.view(batch, height * width, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.trunk_features(images))
