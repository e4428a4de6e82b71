"""Dropout whose CPU mask is drawn 8 bytes per random number.

``nn.Dropout`` on the CPU draws one Bernoulli sample per element, which makes dropout alone
about a third of a MAGNeto training step on CPU (17 dropout sites per step). Here a CPU mask
comes from random 64-bit words viewed as bytes: byte >= round(p * 256) keeps the element, and
kept elements are scaled by 1 / (actual keep probability), so the expectation is exact and
the drop rate is p to within 1/512. On other devices ``torch.nn.functional.dropout`` runs.
"""

from __future__ import annotations

import torch
from torch import nn


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    cut = round(p * 256)
    keep_prob = 1.0 - cut / 256.0
    words = (x.numel() + 7) // 8
    # The full signed range: random_() alone never sets an int64's top bit.
    noise = torch.empty(words, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = noise.view(torch.uint8)[: x.numel()].view(x.shape) >= cut
    # A float mask times x is cheaper, forward and backward, than torch.where on the CPU.
    return x * keep.to(x.dtype).mul_(1.0 / keep_prob)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the fast CPU path; same parameters and state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)
