"""Building blocks shared by MAGNeto and its baselines, working on packed tokens.

The Transformer encoder here computes exactly what ``nn.TransformerEncoder`` of post-norm
``nn.TransformerEncoderLayer``s (ReLU feed-forward) computes on the real positions, with the
same parameter names and shapes, but runs its position-wise parts on the real tokens only
(see :mod:`magneto.model.packing`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from magneto.model.attention import attention, attention_weights
from magneto.model.dropout import Dropout
from magneto.model.packing import Packing


def _heads(x: torch.Tensor, batch: int, length: int, heads: int) -> torch.Tensor:
    """``(B, L, d)`` -> ``(B, heads, L, d / heads)``."""
    return x.view(batch, length, heads, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, L, dh)`` -> ``(B, L, heads * dh)``."""
    b, h, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, h * dh)


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer (self-attention, ReLU feed-forward)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.heads = heads
        self.attention_dropout = dropout

    def attend(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        attn = self.self_attn
        qkv = packing.unpack(F.linear(x, attn.in_proj_weight, attn.in_proj_bias))
        q, k, v = (_heads(t, packing.batch, packing.length, self.heads) for t in qkv.chunk(3, -1))
        keep = ~packing.padding_mask[:, None, None, :]
        out = attention(q, k, v, keep, self.attention_dropout, self.training)
        return F.linear(packing.pack(_merge(out)), attn.out_proj.weight, attn.out_proj.bias)

    def forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.attend(x, packing)))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer` (state-dict compatible with ``nn.TransformerEncoder``)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [EncoderLayer(d_model, heads, d_ff, dropout) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, packing)
        return x


class TagStream(nn.Module):
    """Tag embeddings -> Transformer encoder -> ReLU; a linear head gives one logit per tag."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, layers: int) -> None:
        super().__init__()
        self.encoder = Encoder(d_model, heads, d_ff, dropout, layers)
        self.head = nn.Linear(d_model, 1)

    def forward(
        self, embedded: torch.Tensor, packing: Packing
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.encoder(embedded, packing))
        return features, self.head(features).squeeze(-1)


class ImageStream(nn.Module):
    """Tags attend to image regions, then a Transformer encoder relates the fused tag vectors."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, layers: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.dropout = Dropout(dropout)
        self.encoder = Encoder(d_model, heads, d_ff, dropout, layers)
        self.head = nn.Linear(d_model, 1)
        self.heads = heads
        self.attention_dropout = dropout

    def attend(
        self, embedded: torch.Tensor, regions: torch.Tensor, packing: Packing
    ) -> torch.Tensor:
        """Multi-head attention: packed tag vectors are queries, regions keys and values."""
        attn = self.attention
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        batch, n_regions = regions.shape[:2]
        q = _heads(packing.unpack(F.linear(embedded, w_q, b_q)), batch, packing.length, self.heads)
        k = _heads(F.linear(regions, w_k, b_k), batch, n_regions, self.heads)
        v = _heads(F.linear(regions, w_v, b_v), batch, n_regions, self.heads)
        out = attention(q, k, v, None, self.attention_dropout, self.training)
        return F.linear(packing.pack(_merge(out)), attn.out_proj.weight, attn.out_proj.bias)

    def attention_weights(
        self, embedded: torch.Tensor, regions: torch.Tensor, packing: Packing
    ) -> torch.Tensor:
        """How much each tag looked at each region: ``(B, L, R)``, averaged over the heads (each
        row sums to 1; 0 at padded positions). Computed only when an explanation is asked
        for: the forward pass keeps no weights (see :mod:`magneto.model.attention`)."""
        attn = self.attention
        w_q, w_k, _ = attn.in_proj_weight.chunk(3)
        b_q, b_k, _ = attn.in_proj_bias.chunk(3)
        batch, n_regions = regions.shape[:2]
        q = _heads(packing.unpack(F.linear(embedded, w_q, b_q)), batch, packing.length, self.heads)
        k = _heads(F.linear(regions, w_k, b_k), batch, n_regions, self.heads)
        weights = attention_weights(q, k).mean(dim=1)
        return weights.masked_fill(packing.padding_mask[:, :, None], 0.0)

    def forward(
        self, embedded: torch.Tensor, regions: torch.Tensor, packing: Packing
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.dropout(torch.relu(self.attend(embedded, regions, packing)))
        features = torch.relu(self.encoder(fused, packing))
        return features, self.head(features).squeeze(-1)


class Gate(nn.Module):
    """Paper Table 1: per-tag weight alpha of the image stream from both streams' features."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Dropout(dropout),
            nn.Linear(2 * d_model, d_ff),
            nn.ReLU(),
            Dropout(dropout),
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
            nn.Linear(d_model, d_ff), nn.ReLU(), Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.ffn(x)))
