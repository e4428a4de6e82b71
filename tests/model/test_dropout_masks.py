"""The byte-mask dropout: bf16 masks drop exactly the elements float32 masks drop."""

from __future__ import annotations

import torch

from magneto.model.dropout import fast_dropout


def test_bf16_dropout_masks_equal_the_float_ones():
    x = torch.linspace(-3, 3, 40000).view(200, 200)
    torch.manual_seed(5)
    exact = fast_dropout(x, 0.3)
    torch.manual_seed(5)
    low = fast_dropout(x.to(torch.bfloat16), 0.3)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low == 0, exact == 0)  # the same elements dropped, same draws
    assert torch.allclose(low.float(), exact, rtol=0.01, atol=0.02)
