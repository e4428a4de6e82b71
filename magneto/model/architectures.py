"""MAGNeto (paper Fig. 2d) and the baselines FF, TF-t and TF-it (Fig. 2a-c).

Every model takes ``(images, tags, padding_mask)`` and returns a :class:`ModelOutput` of
per-tag probabilities. Tags are a set: there is no positional encoding, and padded positions
never influence real ones (they are masked out of every attention).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from magneto.devices import fast_cpu_backbone
from magneto.model.backbone import ImageFeatureExtractor
from magneto.model.config import ModelConfig
from magneto.model.dropout import Dropout
from magneto.model.layers import Gate, ImageStream, ResidualFeedForward, TagStream
from magneto.model.packing import Packing


class ModelOutput(NamedTuple):
    """Per-tag outputs, each ``(B, L)``; streams a model lacks are None.

    ``final`` is O = alpha * O_it + (1 - alpha) * O_t for MAGNeto (the mean of the two streams
    for the gate-less pre-training model); ``alpha`` is the gate, the weight of the image stream.
    """

    final: torch.Tensor
    tag: torch.Tensor | None = None
    image: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    tag_logits: torch.Tensor | None = None
    image_logits: torch.Tensor | None = None
    # Only when asked for (``explain=True``): each tag's attention over the image's region
    # grid, averaged over heads, ``(B, L, H, W)`` (the backbone's feature-map grid).
    attention: torch.Tensor | None = None


class TagEmbedder(nn.Module):
    """``nn.Embedding(vocab_size + 1, d_model)``; the last row is the padding vector."""

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, d_model, padding_idx=vocab_size)

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        return self.embedding(tags)


class TagBias(nn.Module):
    """One learned logit per tag, added to a model's per-tag outputs.

    Why: a network learns a rarely seen tag's rate less well than counting does (on the
    large-scale profile FF scored 0.1-0.5 F1 below tag-prior, most of the gap in tags seen 3 to
    9 times). Started at the counted log-odds (:meth:`start_from`), each tag's score starts
    from its counted rate, moved by what the rest of the network adds. (Starting the per-tag
    heads at 0 as well, so that a fresh model scores exactly tag-prior, made MAGNeto stop at
    the prior: validation F1 never passed its first epoch's, and early stopping ended the run.)
    Starts at 0 (no effect) until then; the padding row stays 0.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logit = nn.Embedding(vocab_size + 1, 1, padding_idx=vocab_size)
        nn.init.zeros_(self.logit.weight)

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        return self.logit(tags).squeeze(-1)

    @torch.no_grad()
    def start_from(self, rates: torch.Tensor) -> None:
        """Set each tag's logit to ``log(r / (1 - r))`` of its rate (one per vocabulary tag)."""
        if rates.shape != (self.logit.num_embeddings - 1,):
            raise ValueError(
                f"need one rate per vocabulary tag ({self.logit.num_embeddings - 1}), "
                f"got shape {tuple(rates.shape)}"
            )
        self.logit.weight[:-1, 0] = torch.logit(rates.double().clamp(1e-4, 1 - 1e-4)).float()


def _probs(logits: torch.Tensor, packing: Packing) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed logits -> ``(B, L)`` probabilities and logits, 0 at padded positions."""
    return packing.unpack(torch.sigmoid(logits)), packing.unpack(logits)


class TagModel(nn.Module):
    """What every architecture has: its config, the tag embedder, and (image models) the
    image feature extractor. Whether it reads images is its config's ``uses_images``."""

    image_extractor: ImageFeatureExtractor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tag_embedder = TagEmbedder(int(config.vocab_size or 0), config.d_model)
        self.tag_dropout = Dropout(config.dropout)
        self.tag_bias = TagBias(int(config.vocab_size or 0)) if config.tag_bias else None

    @property
    def uses_images(self) -> bool:
        return self.config.uses_images

    def _embed(self, tags: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Dropped-out embeddings of the real tags, packed ``(N, d_model)``."""
        return self.tag_dropout(self.tag_embedder(packing.pack(tags)))

    def _biased(self, logits: torch.Tensor, tags: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed per-tag logits plus each tag's learned logit (with ``tag_bias``)."""
        if self.tag_bias is None:
            return logits
        return logits + self.tag_bias(packing.pack(tags))

    def _regions(
        self, images: torch.Tensor | None, image_features: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Regions ``(B, H*W, d_model)`` and their grid ``(H, W)``, from the images or from
        their cached backbone feature maps."""
        if image_features is None:
            if images is None:
                raise ValueError(f"{self.config.architecture} needs images")
            image_features = self.image_extractor.trunk_features(images)
        height, width = image_features.shape[-2:]
        return self.image_extractor.project(image_features), (int(height), int(width))

    def _attention(
        self,
        stream: ImageStream,
        embedded: torch.Tensor,
        regions: torch.Tensor,
        grid: tuple[int, int],
        packing: Packing,
    ) -> torch.Tensor:
        weights = stream.attention_weights(embedded, regions, packing)
        return weights.view(packing.batch, packing.length, *grid)


class Magneto(TagModel):
    """Two streams (tags; tags attending to the image) fused per tag by a learned gate."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.tag_stream = TagStream(c.d_model, c.heads, c.d_ff, c.dropout, c.tag_layers)
        self.image_extractor = ImageFeatureExtractor(
            c.backbone, c.d_model, c.backbone_weights, c.frozen_stages
        )
        self.image_stream = ImageStream(c.d_model, c.heads, c.d_ff, c.dropout, c.image_layers)
        self.gate = Gate(c.d_model, c.gate_d_ff or c.d_ff, c.dropout) if c.gating else None

    def forward(
        self,
        images: torch.Tensor | None,
        tags: torch.Tensor,
        padding_mask: torch.Tensor,
        image_features: torch.Tensor | None = None,
        explain: bool = False,
    ) -> ModelOutput:
        packing = Packing(padding_mask)
        embedded = self._embed(tags, packing)
        tag_features, tag_logits = self.tag_stream(embedded, packing)
        regions, grid = self._regions(images, image_features)
        image_features_out, image_logits = self.image_stream(embedded, regions, packing)
        tag_logits = self._biased(tag_logits, tags, packing)
        image_logits = self._biased(image_logits, tags, packing)
        o_t, o_it = torch.sigmoid(tag_logits), torch.sigmoid(image_logits)
        if self.gate is None:
            final = 0.5 * (o_t + o_it)
            alpha = None
        else:
            alpha_packed = self.gate(tag_features, image_features_out)
            final = alpha_packed * o_it + (1.0 - alpha_packed) * o_t
            alpha = packing.unpack(alpha_packed)
        attention = (
            self._attention(self.image_stream, embedded, regions, grid, packing)
            if explain
            else None
        )
        return ModelOutput(
            packing.unpack(final),
            packing.unpack(o_t),
            packing.unpack(o_it),
            alpha,
            packing.unpack(tag_logits),
            packing.unpack(image_logits),
            attention,
        )


class FeedForwardBaseline(TagModel):
    """FF: residual feed-forward blocks on each tag alone (tags only, no tag interaction)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.blocks = nn.Sequential(
            *[ResidualFeedForward(c.d_model, c.d_ff, c.dropout) for _ in range(c.tag_layers)]
        )
        self.head = nn.Linear(c.d_model, 1)

    def forward(
        self, images, tags, padding_mask, image_features=None, explain=False
    ) -> ModelOutput:
        packing = Packing(padding_mask)
        features = torch.relu(self.blocks(self._embed(tags, packing)))
        logits = self._biased(self.head(features).squeeze(-1), tags, packing)
        probs, logits = _probs(logits, packing)
        return ModelOutput(probs, tag=probs, tag_logits=logits)


class TagTransformer(TagModel):
    """TF-t: the tag stream alone."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.tag_stream = TagStream(c.d_model, c.heads, c.d_ff, c.dropout, c.tag_layers)

    def forward(
        self, images, tags, padding_mask, image_features=None, explain=False
    ) -> ModelOutput:
        packing = Packing(padding_mask)
        _, logits = self.tag_stream(self._embed(tags, packing), packing)
        probs, logits = _probs(self._biased(logits, tags, packing), packing)
        return ModelOutput(probs, tag=probs, tag_logits=logits)


class ImageTagTransformer(TagModel):
    """TF-it: the image stream alone (tags attend to image regions, then a Transformer)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.image_extractor = ImageFeatureExtractor(
            c.backbone, c.d_model, c.backbone_weights, c.frozen_stages
        )
        self.image_stream = ImageStream(c.d_model, c.heads, c.d_ff, c.dropout, c.image_layers)

    def forward(
        self, images, tags, padding_mask, image_features=None, explain=False
    ) -> ModelOutput:
        packing = Packing(padding_mask)
        regions, grid = self._regions(images, image_features)
        embedded = self._embed(tags, packing)
        _, logits = self.image_stream(embedded, regions, packing)
        probs, logits = _probs(self._biased(logits, tags, packing), packing)
        attention = (
            self._attention(self.image_stream, embedded, regions, grid, packing)
            if explain
            else None
        )
        return ModelOutput(probs, image=probs, image_logits=logits, attention=attention)


ARCHITECTURES: dict[str, type[TagModel]] = {
    "magneto": Magneto,
    "ff": FeedForwardBaseline,
    "tf-t": TagTransformer,
    "tf-it": ImageTagTransformer,
}


def speed_up_backbone(model: TagModel, device: torch.device, mode: str = "auto") -> bool:
    """Turn the bf16 CPU backbone on where it pays (``fast_cpu_backbone``); True if it did."""
    if model.uses_images and fast_cpu_backbone(device, mode):
        model.image_extractor.use_cpu_bf16()
        return True
    return False


def build_model(config: ModelConfig) -> TagModel:
    """Build the network a config describes (weights random, backbone as configured)."""
    if config.vocab_size is None:
        raise ValueError("the model config needs vocab_size (the number of tags)")
    return ARCHITECTURES[config.architecture](config)
