"""Packed tokens: the real (non-padding) tag positions of a batch, as one ``(N, ...)`` tensor.

Everything position-wise in MAGNeto (embeddings, projections, feed-forward blocks, norms,
heads, the gate) runs on the N real tokens only; attention unpacks to ``(B, L, ...)`` and
masks padded keys. Padding therefore costs nothing and can never influence a real position.

The packed length is rounded up to a multiple of :data:`ROWS_MULTIPLE` with a few padded
positions (their rows are computed and then dropped by :meth:`Packing.unpack`, so they get
no gradient). Why: oneDNN compiles a bf16 matrix-multiply kernel for every new shape, and with
a token count that changes every batch the compilation costs more than the multiply (2.4 ms
against 0.3 ms for a (2,500 x 128) @ (128 x 512) on this project's 2-core Xeon). Rounding
leaves a few dozen shapes, each compiled once.
"""

from __future__ import annotations

import torch

ROWS_MULTIPLE = 64


class Packing:
    """Index of the real positions of a ``(B, L)`` padding mask (True = padding)."""

    def __init__(self, padding_mask: torch.Tensor) -> None:
        self.padding_mask = padding_mask
        self.batch, self.length = padding_mask.shape
        flat = padding_mask.reshape(-1)
        self.index = (~flat).nonzero().squeeze(1)
        real = int(self.index.numel())
        rows = min(-(-real // ROWS_MULTIPLE) * ROWS_MULTIPLE, flat.numel())
        filler = flat.nonzero().squeeze(1)[: rows - real]
        self.rows_index = torch.cat((self.index, filler)) if len(filler) else self.index

    @property
    def tokens(self) -> int:
        """Real tokens (the packed tensors have a few more rows, see :data:`ROWS_MULTIPLE`)."""
        return int(self.index.numel())

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, ...)`` -> ``(N', ...)``: the N real positions first, then filler rows."""
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.rows_index)

    def unpack(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``(N', ...)`` -> ``(B, L, ...)`` with ``fill`` at padded positions."""
        real = x[: self.index.numel()]
        out = real.new_full((self.batch * self.length, *real.shape[1:]), fill)
        out = out.index_copy(0, self.index, real)
        return out.view(self.batch, self.length, *real.shape[1:])
