"""The masked multi-label losses, computed in float32 from log-probabilities.

Every loss is a module called as ``loss(probs, targets, padding_mask=None, logits=None)``:
``targets`` in [0, 1] of shape ``(B, L)`` (0/1, or soft where the formula allows it),
``padding_mask`` True at padding (as in PyTorch); padded positions never contribute.
Element-wise losses average over the real positions of the batch; Dice and ZLPR are computed
per item and averaged over items; sigmoidF1 over the whole batch (or per item).

**Numerics.** Whatever the autocast dtype, a loss works on a :class:`LogProbs` in float32:
``log p = logsigmoid(s)`` and ``log(1 - p) = logsigmoid(-s)`` from the stream logit ``s`` (the
way ``binary_cross_entropy_with_logits`` does), and probabilities ``p = exp(log p)`` only where a
formula needs them (Dice, the focal and ASL/APL polynomial factors, sigmoidF1). So a confident
mistake keeps its gradient: under bf16 autocast ``sigmoid(7)`` already rounds to 1.0, and a loss
computed from that probability gives a false positive no gradient at all. Given ``logits``, a
loss uses them (cast to float32 first); ``probs`` alone (an output without a logit) fall back to
``log p`` and ``log(1 - p)`` of ``p`` clamped to [1e-7, 1 - 1e-7]. ``probs`` may also be a
ready :class:`LogProbs` (MAGNeto's gated output, see :meth:`LogProbs.mixture`).

Formulas: BCE and Dice (smooth s = 1) as in the MAGNeto paper; focal (Lin et al.); ASL (Ridnik
et al.) and APL from ``asymmetric-polynomial-loss.txt``; sigmoidF1 from
``sigmoidf1-loss-framework.txt``; ZLPR, in its soft-label form, from ``zlpr-loss.txt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-7
_ALPHA_MAX = 1.0 - 2.0**-24  # the largest float32 below 1
_TINY = torch.finfo(torch.float32).tiny


def _float32(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


@dataclass(frozen=True)
class LogProbs:
    """Float32 ``log p`` and ``log(1 - p)`` per position, and the logit when one exists.

    ``logits`` is the exact ``log p - log(1 - p)`` (finite wherever both logs are) when the
    output has no logit of its own.
    """

    log_p: torch.Tensor
    log_1mp: torch.Tensor
    logit: torch.Tensor | None = None

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> LogProbs:
        with _float32(logits.device):
            s = logits.float()
            return cls(F.logsigmoid(s), F.logsigmoid(-s), s)

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> LogProbs:
        with _float32(probs.device):
            p = probs.float().clamp(EPS, 1.0 - EPS)
            return cls(torch.log(p), torch.log1p(-p))

    @classmethod
    def mixture(cls, alpha: torch.Tensor, first: LogProbs, second: LogProbs) -> LogProbs:
        """O = alpha * first + (1 - alpha) * second, in logs: MAGNeto's gated output.

        ``log O = logaddexp(log alpha + log p1, log(1 - alpha) + log p2)`` and likewise
        ``log(1 - O)`` from the ``log(1 - p)`` of both, all float32, so neither O nor 1 - O is
        ever rounded to 0. alpha (a probability from the gate) is taken as it is, cast to
        float32: an alpha of exactly 0 or 1 (a saturated bf16 gate) gives log 0 = -inf, so O is
        exactly the one stream and that stream keeps its whole gradient; the gate itself then
        gets none there (a saturated sigmoid has none either), never NaN.
        """
        with _float32(alpha.device):
            a = alpha.float()
            inf = torch.full_like(a, -math.inf)
            log_a = torch.where(a > 0, torch.log(a.clamp_min(_TINY)), inf)
            log_1ma = torch.where(a < 1, torch.log1p(-a.clamp_max(_ALPHA_MAX)), inf)
            return cls(
                torch.logaddexp(log_a + first.log_p, log_1ma + second.log_p),
                torch.logaddexp(log_a + first.log_1mp, log_1ma + second.log_1mp),
            )

    @property
    def logits(self) -> torch.Tensor:
        return self.logit if self.logit is not None else self.log_p - self.log_1mp

    @property
    def p(self) -> torch.Tensor:
        return torch.exp(self.log_p)

    @property
    def q(self) -> torch.Tensor:
        """1 - p, from ``log(1 - p)`` (exact where p rounds to 1)."""
        return torch.exp(self.log_1mp)

    @property
    def shape(self) -> torch.Size:
        return self.log_p.shape

    def where(self, valid: torch.Tensor) -> LogProbs:
        """Padded positions set to p = 1/2 (finite everywhere; no gradient flows there)."""
        half = torch.full_like(self.log_p, -0.6931471805599453)
        logit = None if self.logit is None else torch.where(valid, self.logit, 0.0)
        return LogProbs(
            torch.where(valid, self.log_p, half), torch.where(valid, self.log_1mp, half), logit
        )


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def _pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """x ** exponent for x >= 0, with 0 ** 0 = 1 and a finite gradient at x = 0."""
    if exponent == 0:
        return torch.ones_like(x)
    return torch.where(x > 0, x.clamp_min(_TINY) ** exponent, 0.0)


class MultiLabelLoss(nn.Module):
    """Base class: subclasses implement ``compute(x, y, valid)`` on float32 tensors, with
    padded positions already neutral (p = 1/2, target 0) and ``valid`` False there."""

    def forward(
        self,
        probs: torch.Tensor | LogProbs,
        targets: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if isinstance(probs, LogProbs):
            x = probs
        elif logits is not None:
            if probs.shape != logits.shape:
                raise ValueError(
                    f"probs {tuple(probs.shape)} and logits {tuple(logits.shape)} differ"
                )
            x = LogProbs.from_logits(logits)
        else:
            x = LogProbs.from_probs(probs)
        if x.shape != targets.shape:
            raise ValueError(f"probs {tuple(x.shape)} and targets {tuple(targets.shape)} differ")
        device = x.log_p.device
        with _float32(device):
            if padding_mask is None:
                valid = torch.ones(x.shape, dtype=torch.bool, device=device)
            else:
                valid = ~padding_mask.to(device)
            y = torch.where(valid, targets.to(device).float(), 0.0)
            return self.compute(x.where(valid), y, valid)

    def compute(self, x: LogProbs, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BCELoss(MultiLabelLoss):
    """-(y log p + (1 - y) log(1 - p)) averaged over real positions (BCE with logits)."""

    def compute(self, x, y, valid):
        return _masked_mean(-(y * x.log_p + (1.0 - y) * x.log_1mp), valid)


class DiceLoss(MultiLabelLoss):
    """1 - (2 sum(y p) + s) / (sum(p) + sum(y) + s) per item, averaged over items."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        if not smooth > 0:
            raise ValueError("smooth must be > 0 (an item without positives would be 0/0)")
        self.smooth = smooth

    def compute(self, x, y, valid):
        w = valid.to(y.dtype)
        p = x.p * w
        score = (2.0 * (y * p).sum(-1) + self.smooth) / (p.sum(-1) + (y * w).sum(-1) + self.smooth)
        return (1.0 - score).mean()


class BCEDiceLoss(MultiLabelLoss):
    """The paper's default: BCE + Dice."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.bce = BCELoss()
        self.dice = DiceLoss(smooth)

    def compute(self, x, y, valid):
        return self.bce.compute(x, y, valid) + self.dice.compute(x, y, valid)


class FocalLoss(MultiLabelLoss):
    """-alpha_t (1 - p_t)^gamma log(p_t), i.e. y (1-p)^g (-log p) + (1-y) p^g (-log(1-p)),
    weighted by alpha (positives) and 1 - alpha (negatives); alpha None weighs both equally."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError("gamma must be >= 0")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1] (or null)")
        self.gamma = gamma
        self.alpha = alpha

    def compute(self, x, y, valid):
        pos = _pow(x.q, self.gamma) * -x.log_p
        neg = _pow(x.p, self.gamma) * -x.log_1mp
        if self.alpha is not None:
            pos, neg = self.alpha * pos, (1.0 - self.alpha) * neg
        return _masked_mean(y * pos + (1.0 - y) * neg, valid)


class APLoss(MultiLabelLoss):
    """Asymmetric polynomial loss (APL); ASL is the case alpha1 = 1, alpha2 = 1/2, beta1 = 1.

    L+ = (1-p)^g+ [-log p + (a1 - 1)(1-p) + (a2 - 1/2)(1-p)^2]
    L- = p_r^g- [-log(1 - p_r) + (b1 - 1) p_r],  p_r = max(p - p_th, 0)
    (the series sum_n b_n p_r^(n+g-) with b_n = 1/n, as in the paper's first line).
    With clip p_th = 0, -log(1 - p_r) is -logsigmoid(-s); with p_th > 0 it is at most
    -log(p_th), and a confident negative's gradient fades with p(1 - p): by design, the paper's
    "very hard negatives are suspected to be mislabelled".
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        alpha1: float = 1.3,
        alpha2: float = 0.5,
        beta1: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= clip < 1.0:
            raise ValueError("clip (p_th) must be in [0, 1)")
        if gamma_pos < 0 or gamma_neg < 0:
            raise ValueError("gamma_pos and gamma_neg must be >= 0")
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.alpha1, self.alpha2, self.beta1 = alpha1, alpha2, beta1

    def compute(self, x, y, valid):
        q = x.q
        pos = _pow(q, self.gamma_pos) * (
            -x.log_p + (self.alpha1 - 1.0) * q + (self.alpha2 - 0.5) * q**2
        )
        if self.clip == 0:
            p_r, log_1mpr = x.p, x.log_1mp
        else:  # 1 - p_r = min(1 - p + p_th, 1)
            p_r = (x.p - self.clip).clamp_min(0.0)
            log_1mpr = torch.log((q + self.clip).clamp_max(1.0))
        neg = _pow(p_r, self.gamma_neg) * (-log_1mpr + (self.beta1 - 1.0) * p_r)
        return _masked_mean(y * pos + (1.0 - y) * neg, valid)


class ASLoss(APLoss):
    """Asymmetric loss: APL with its polynomial coefficients at their Taylor values."""

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05):
        super().__init__(gamma_pos, gamma_neg, clip, alpha1=1.0, alpha2=0.5, beta1=1.0)


class SigmoidF1Loss(MultiLabelLoss):
    """1 - 2 tp / (2 tp + fn + fp) with S(u) = sigmoid(beta (u + eta)) on the logits u.

    ``reduction="batch"`` (the paper) sums tp, fp and fn over every real position of the
    batch; ``"item"`` computes the loss per item and averages over items. S saturates by design,
    so a confident mistake's gradient fades like S(1 - S) (the surrogate is bounded).
    """

    def __init__(
        self, beta: float = 1.0, eta: float = 0.0, reduction: Literal["item", "batch"] = "batch"
    ) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError("beta must be > 0")
        if reduction not in ("item", "batch"):
            raise ValueError("reduction must be 'item' or 'batch'")
        self.beta, self.eta, self.reduction = beta, eta, reduction

    def compute(self, x, y, valid):
        s = torch.sigmoid(self.beta * (x.logits + self.eta)) * valid.to(y.dtype)
        dims = (-1,) if self.reduction == "item" else tuple(range(s.dim()))
        tp = (s * y).sum(dims)
        fp = (s * (1.0 - y)).sum(dims)
        fn = ((1.0 - s) * y).sum(dims)
        return (1.0 - 2.0 * tp / (2.0 * tp + fn + fp + EPS)).mean()


class ZLPRLoss(MultiLabelLoss):
    """log(1 + sum_i y_i e^-s_i) + log(1 + sum_i (1 - y_i) e^s_i) per item, on logits s.

    This is the soft-label form (the paper's appendix A); with 0/1 targets it is exactly
    ZLPR, log(1 + sum_pos e^-s) + log(1 + sum_neg e^s), whose threshold is s = 0. With soft
    targets its optimum is y = sigmoid(2 s): ZLPR's probabilities are sigmoid(2 s), not
    sigmoid(s) (both put the threshold at s = 0, i.e. p = 1/2).
    """

    def compute(self, x, y, valid):
        s = x.logits
        low = torch.finfo(s.dtype).min
        pos = torch.where(valid & (y > 0), torch.log(y.clamp_min(_TINY)) - s, low)
        neg = torch.where(valid & (y < 1), torch.log((1.0 - y).clamp_min(_TINY)) + s, low)
        zero = torch.zeros_like(s[..., :1])
        loss = torch.logsumexp(torch.cat([zero, pos], -1), -1) + torch.logsumexp(
            torch.cat([zero, neg], -1), -1
        )
        return loss.mean()
