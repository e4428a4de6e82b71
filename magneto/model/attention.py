"""Scaled dot-product attention with a cheap dropout on the CPU.

With dropout, PyTorch's CPU ``scaled_dot_product_attention`` runs its math path and draws one
Bernoulli sample per attention weight, which made the draw alone 8 % of a bf16 training step
at ``configs/large-scale-cpu.yaml``. While training on the CPU this module computes the same
attention itself, in float32 like that math path (bf16 inputs are widened, the result is cast
back), and drops weights with the byte-mask dropout the rest of the model uses. Everywhere else
(evaluation, no dropout, GPUs) the fused kernel runs. Float32 matters: an earlier version that
let autocast multiply queries, keys and weights in bf16 turned outlier-detection pre-training
NaN at a high learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magneto.model.dropout import fast_dropout


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` in float32 over the keys where ``keep`` is True: the
    weights the CPU training path drops and the explanations read. Masked scores are float32's
    lowest value rather than -inf, so that a query with no key left (only an item without tags
    has one) gets finite weights instead of NaN."""
    with torch.autocast(q.device.type, enabled=False):
        scores = (q.float() @ k.float().transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
        if keep is not None:
            scores = scores.masked_fill_(~keep, torch.finfo(torch.float32).min)
        return torch.softmax(scores, dim=-1)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over the keys where ``keep`` is True (broadcast to
    ``(B, heads, Lq, Lk)``), weights dropped with probability ``dropout`` while ``training``."""
    p = dropout if training else 0.0
    if p <= 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
    weights = fast_dropout(attention_weights(q, k, keep), p)
    with torch.autocast("cpu", enabled=False):
        return (weights @ v.float()).to(q.dtype)
