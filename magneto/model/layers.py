"""Building blocks shared by MAGNeto and its baselines."""

from __future__ import annotations

import torch
from torch import nn


def transformer_encoder(d_model: int, heads: int, d_ff: int, dropout: float, layers: int):
    """Post-norm Transformer encoder with ReLU feed-forward (the paper's configuration)."""
    layer = nn.TransformerEncoderLayer(
        d_model=d_model,
        nhead=heads,
        dim_feedforward=d_ff,
        dropout=dropout,
        activation="relu",
        batch_first=True,
        norm_first=False,
    )
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class TagStream(nn.Module):
    """Tag embeddings -> Transformer encoder -> ReLU; a linear head gives one logit per tag."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, layers: int) -> None:
        super().__init__()
        self.encoder = transformer_encoder(d_model, heads, d_ff, dropout, layers)
        self.head = nn.Linear(d_model, 1)

    def forward(
        self, embedded: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.encoder(embedded, src_key_padding_mask=padding_mask))
        return features, self.head(features).squeeze(-1)


class ImageStream(nn.Module):
    """Tags attend to image regions, then a Transformer encoder relates the fused tag vectors."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, layers: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.encoder = transformer_encoder(d_model, heads, d_ff, dropout, layers)
        self.head = nn.Linear(d_model, 1)

    def forward(
        self, embedded: torch.Tensor, regions: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused, _ = self.attention(embedded, regions, regions, need_weights=False)
        fused = self.dropout(torch.relu(fused))
        features = torch.relu(self.encoder(fused, src_key_padding_mask=padding_mask))
        return features, self.head(features).squeeze(-1)


class Gate(nn.Module):
    """Paper Table 1: per-tag weight alpha of the image stream from both streams' features."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_ff),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(d_ff, 1),
        )

    def forward(self, tag_features: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        joint = torch.cat((tag_features, image_features), dim=-1)
        return torch.sigmoid(self.net(joint).squeeze(-1))


class ResidualFeedForward(nn.Module):
    """x + FFN(x), then LayerNorm: the FF baseline's block (no interaction between tags)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.ffn(x)))
