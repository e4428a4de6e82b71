"""Attention with the cheap CPU dropout: fused attention's results without dropout, masked keys
never read, the expectation and drop rate kept, and float32 arithmetic under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from magneto.model.attention import attention
from magneto.model.dropout import fast_dropout


def _inputs(dtype: torch.dtype = torch.float32, dh: int = 8):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, dh).to(dtype) for _ in range(3))
    keep = (torch.arange(5)[None, :] < torch.tensor([5, 3, 1])[:, None])[:, None, None, :]
    return q, k, v, keep


def test_without_dropout_it_is_fused_attention():
    q, k, v, keep = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.allclose(attention(q, k, v, keep, 0.0, True), expected, atol=1e-6)
    assert torch.allclose(attention(q, k, v, keep, 0.3, False), expected, atol=1e-6)


def test_training_dropout_never_reads_masked_keys():
    q, k, v, keep = _inputs()
    poisoned = v.clone()
    poisoned[1, :, 3:] = 1e6  # keys the mask hides for item 1
    torch.manual_seed(3)
    clean = attention(q, k, v, keep, 0.5, True)
    torch.manual_seed(3)
    assert torch.equal(attention(q, k, poisoned, keep, 0.5, True), clean)


def test_training_dropout_keeps_the_expectation_and_the_rate():
    q, k, v, keep = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.manual_seed(1)
    draws = torch.stack([attention(q, k, v, keep, 0.25, True) for _ in range(4000)])
    assert torch.allclose(draws.mean(0), expected, atol=0.05)
    ones = torch.eye(5).expand(3, 2, 5, 5)  # v = identity: the output rows are the weights
    weights = torch.stack([attention(q, k, ones, None, 0.25, True) for _ in range(200)])
    dropped = (weights == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.02


def _float64_reference(q, k, v, keep, p: float, seed: int) -> torch.Tensor:
    """The same attention and dropout draw in float64 from the same bf16 inputs."""
    scores = (q.double() @ k.double().transpose(-2, -1)) * q.shape[-1] ** -0.5
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    torch.manual_seed(seed)
    return fast_dropout(weights, p) @ v.double()


def test_bf16_inputs_under_autocast_are_computed_in_float32():
    """The path that pre-training at a high learning rate survives: bf16 queries, keys and values
    are widened, so the only bf16 rounding is the result's (half a unit in the last place, and a
    hair for float32's own rounding); multiplying them in bf16 under autocast, as an earlier
    version did, errs by more than a unit."""
    q, k, v, keep = _inputs(torch.bfloat16, dh=64)
    torch.manual_seed(7)
    with torch.autocast("cpu", torch.bfloat16):
        out = attention(q, k, v, keep, 0.1, True)
    assert out.dtype == torch.bfloat16
    reference = _float64_reference(q, k, v, keep, 0.1, seed=7)
    ulp = 2.0 ** (torch.frexp(reference)[1].double() - 8)  # bf16: 8 significant bits
    assert ((out.double() - reference).abs() <= 0.51 * ulp).all()
    with torch.autocast("cpu", torch.bfloat16):  # what the float32 widening avoids
        torch.manual_seed(7)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), -1).to(v.dtype)
        naive = fast_dropout(weights, 0.1) @ v
    assert ((naive.double() - reference).abs() > ulp).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_scores_give_finite_outputs_and_gradients(dtype):
    q, k, v, keep = _inputs(dtype)
    q = (q.float() * 1e3).to(dtype).requires_grad_()
    k, v = k.requires_grad_(), v.requires_grad_()
    out = attention(q, k, v, keep, 0.1, True)
    out.float().sum().backward()
    for tensor in (out, q.grad, k.grad, v.grad):
        assert torch.isfinite(tensor).all()


def test_a_query_with_every_key_masked_stays_finite():
    q, k, v, _ = _inputs()
    keep = torch.ones(3, 1, 1, 5, dtype=torch.bool)
    keep[2] = False  # item 2 has no key at all
    q.requires_grad_()
    out = attention(q, k, v, keep, 0.1, True)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()
