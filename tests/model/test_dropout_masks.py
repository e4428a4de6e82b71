"""The byte-mask dropout: bf16 masks drop exactly the elements float32 masks drop, and masks
built from bits equal the compared-and-scaled ones."""

from __future__ import annotations

import pytest
import torch

from magneto.model.dropout import _scaled_mask, fast_dropout


def test_bf16_dropout_masks_equal_the_float_ones():
    x = torch.linspace(-3, 3, 40000).view(200, 200)
    torch.manual_seed(5)
    exact = fast_dropout(x, 0.3)
    torch.manual_seed(5)
    low = fast_dropout(x.to(torch.bfloat16), 0.3)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low == 0, exact == 0)  # the same elements dropped, same draws
    assert torch.allclose(low.float(), exact, rtol=0.01, atol=0.02)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("cut", [1, 26, 128, 255])
def test_masks_built_from_bits_keep_exactly_the_bytes_at_or_above_the_cut(dtype, cut):
    noise_bytes = torch.arange(256, dtype=torch.uint8).repeat(3).view(3, 256)
    scale = 256 / (256 - cut)
    mask = _scaled_mask(noise_bytes, cut, scale, dtype)
    expected = (noise_bytes >= cut).to(torch.float64) * scale
    assert mask.dtype == dtype
    assert torch.equal(mask, expected.to(dtype))  # zeros below the cut, scale rounded to dtype
