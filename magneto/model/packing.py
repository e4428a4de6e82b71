"""Packed tokens: the real (non-padding) tag positions of a batch, as one ``(N, ...)`` tensor.

Everything position-wise in MAGNeto (embeddings, projections, feed-forward blocks, norms,
heads, the gate) runs on the N real tokens only; attention unpacks to ``(B, L, ...)`` and
masks padded keys. Padding therefore costs nothing and can never influence a real position.
"""

from __future__ import annotations

import torch


class Packing:
    """Index of the real positions of a ``(B, L)`` padding mask (True = padding)."""

    def __init__(self, padding_mask: torch.Tensor) -> None:
        self.padding_mask = padding_mask
        self.batch, self.length = padding_mask.shape
        self.index = (~padding_mask).reshape(-1).nonzero().squeeze(1)

    @property
    def tokens(self) -> int:
        return int(self.index.numel())

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, ...)`` -> ``(N, ...)``."""
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``(N, ...)`` -> ``(B, L, ...)`` with ``fill`` at padded positions."""
        out = x.new_full((self.batch * self.length, *x.shape[1:]), fill)
        out = out.index_copy(0, self.index, x)
        return out.view(self.batch, self.length, *x.shape[1:])
