"""Masked multi-label losses behind one registry, and MAGNeto's total loss.

Every loss is a module called as ``loss(probs, targets, padding_mask, logits=None)``:
``probs`` in (0, 1) of shape ``(B, L)``, ``targets`` 0/1, ``padding_mask`` True at padding (as
in PyTorch). Padded positions never contribute. Element-wise losses average over the real
positions of the batch; set losses (Dice, sigmoidF1, ZLPR) are computed per item and averaged
over items. Losses run in float32 whatever the autocast dtype, for stable logs.

Formulas: BCE and Dice (smooth s = 1) as in the MAGNeto paper; focal (Lin et al.); ASL
(Ridnik et al.) and APL from ``asymmetric-polynomial-loss.txt``; sigmoidF1 from
``sigmoidf1-loss-framework.txt``; ZLPR from ``zlpr-loss.txt`` (on logits).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from magneto.model.architectures import ModelOutput

EPS = 1e-7


def _prepare(
    probs: torch.Tensor, targets: torch.Tensor, padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if probs.shape != targets.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} differ")
    valid = torch.ones_like(probs, dtype=torch.bool) if padding_mask is None else ~padding_mask
    return probs.float(), targets.float(), valid.to(probs.device)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def _logits(probs: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
    if logits is not None:
        return logits.float()
    p = probs.clamp(EPS, 1.0 - EPS)
    return torch.log(p) - torch.log1p(-p)


class MultiLabelLoss(nn.Module):
    """Base class: subclasses implement ``compute`` on float32 tensors."""

    def forward(
        self,
        probs: torch.Tensor,
        targets: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        p, y, valid = _prepare(probs, targets, padding_mask)
        with torch.autocast(device_type=p.device.type, enabled=False):
            return self.compute(p, y, valid, logits)

    def compute(
        self, p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, logits: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


class BCELoss(MultiLabelLoss):
    """Binary cross-entropy averaged over real positions."""

    def compute(self, p, y, valid, logits):
        p = p.clamp(EPS, 1.0 - EPS)
        bce = -(y * torch.log(p) + (1.0 - y) * torch.log1p(-p))
        return _masked_mean(bce, valid)


class DiceLoss(MultiLabelLoss):
    """1 - (2 sum(y p) + s) / (sum(p) + sum(y) + s) per item, averaged over items."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def compute(self, p, y, valid, logits):
        w = valid.to(p.dtype)
        inter = (y * p * w).sum(-1)
        score = (2.0 * inter + self.smooth) / ((p * w).sum(-1) + (y * w).sum(-1) + self.smooth)
        return (1.0 - score).mean()


class BCEDiceLoss(MultiLabelLoss):
    """The paper's default: BCE + Dice."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.bce = BCELoss()
        self.dice = DiceLoss(smooth)

    def compute(self, p, y, valid, logits):
        return self.bce.compute(p, y, valid, logits) + self.dice.compute(p, y, valid, logits)


class FocalLoss(MultiLabelLoss):
    """-alpha_t (1 - p_t)^gamma log(p_t); alpha None weighs both classes equally."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def compute(self, p, y, valid, logits):
        p = p.clamp(EPS, 1.0 - EPS)
        p_t = torch.where(y > 0.5, p, 1.0 - p)
        loss = -((1.0 - p_t) ** self.gamma) * torch.log(p_t)
        if self.alpha is not None:
            loss = loss * torch.where(y > 0.5, self.alpha, 1.0 - self.alpha)
        return _masked_mean(loss, valid)


class APLoss(MultiLabelLoss):
    """Asymmetric polynomial loss (APL); ASL is the case alpha1 = 1, alpha2 = 1/2, beta1 = 1.

    L+ = (1-p)^g+ [-log p + (a1 - 1)(1-p) + (a2 - 1/2)(1-p)^2]
    L- = p_r^g- [-log(1 - p_r) + (b1 - 1) p_r],  p_r = max(p - p_th, 0)
    (the series sum_n b_n p_r^(n+g-) with b_n = 1/n, as in the paper's first line).
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
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.alpha1, self.alpha2, self.beta1 = alpha1, alpha2, beta1

    def compute(self, p, y, valid, logits):
        p = p.clamp(EPS, 1.0 - EPS)
        q = 1.0 - p
        pos = (q**self.gamma_pos) * (
            -torch.log(p) + (self.alpha1 - 1.0) * q + (self.alpha2 - 0.5) * q**2
        )
        p_r = (p - self.clip).clamp_min(0.0)
        neg = (p_r**self.gamma_neg) * (
            -torch.log1p(-p_r.clamp(max=1.0 - EPS)) + (self.beta1 - 1.0) * p_r
        )
        return _masked_mean(y * pos + (1.0 - y) * neg, valid)


class ASLoss(APLoss):
    """Asymmetric loss: APL with its polynomial coefficients at their Taylor values."""

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05):
        super().__init__(gamma_pos, gamma_neg, clip, alpha1=1.0, alpha2=0.5, beta1=1.0)


class SigmoidF1Loss(MultiLabelLoss):
    """1 - soft F1 per item with S(u) = sigmoid(beta (u + eta)) on the logits u."""

    def __init__(self, beta: float = 1.0, eta: float = 0.0) -> None:
        super().__init__()
        self.beta, self.eta = beta, eta

    def compute(self, p, y, valid, logits):
        s = torch.sigmoid(self.beta * (_logits(p, logits) + self.eta))
        w = valid.to(s.dtype)
        tp = (s * y * w).sum(-1)
        fp = (s * (1.0 - y) * w).sum(-1)
        fn = ((1.0 - s) * y * w).sum(-1)
        return (1.0 - 2.0 * tp / (2.0 * tp + fn + fp + EPS)).mean()


class ZLPRLoss(MultiLabelLoss):
    """log(1 + sum_pos e^-s) + log(1 + sum_neg e^s) per item, on logits s (threshold 0)."""

    def compute(self, p, y, valid, logits):
        s = _logits(p, logits)
        neg_inf = torch.finfo(s.dtype).min
        pos = torch.where(valid & (y > 0.5), -s, neg_inf)
        neg = torch.where(valid & (y <= 0.5), s, neg_inf)
        zero = torch.zeros_like(s[..., :1])
        loss = torch.logsumexp(torch.cat([zero, pos], -1), -1) + torch.logsumexp(
            torch.cat([zero, neg], -1), -1
        )
        return loss.mean()


LOSSES: dict[str, type[MultiLabelLoss]] = {
    "bce": BCELoss,
    "dice": DiceLoss,
    "bce_dice": BCEDiceLoss,
    "focal": FocalLoss,
    "asl": ASLoss,
    "apl": APLoss,
    "sigmoidf1": SigmoidF1Loss,
    "zlpr": ZLPRLoss,
}


def build_loss(name: str, **params: float) -> MultiLabelLoss:
    """Build a registered loss by name (``bce-dice`` and ``bce_dice`` are the same)."""
    key = name.strip().lower().replace("-", "_")
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    cls = LOSSES[key]
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss {key} has no parameter {unknown[0]!r}; accepted: {', '.join(accepted) or 'none'}"
        )
    return cls(**params)


class TotalLoss(nn.Module):
    """L_total = L_g + L_it + L_t (paper eq. 5), each on its own output, all masked.

    ``aux=False`` keeps only L_g. Models without a gate contribute what they have: baselines
    their single output; the gate-less pre-training model L_it + L_t (paper section 5.2).
    """

    def __init__(self, loss: MultiLabelLoss, aux: bool = True) -> None:
        super().__init__()
        self.loss = loss
        self.aux = aux

    def forward(
        self, output: ModelOutput, targets: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        two_streams = output.tag is not None and output.image is not None
        if output.alpha is not None:  # MAGNeto: gated output, optionally both auxiliaries
            parts["final"] = self.loss(output.final, targets, padding_mask)
        elif not two_streams:  # a baseline: its single output, with that stream's logits
            logits = output.tag_logits if output.tag is not None else output.image_logits
            parts["final"] = self.loss(output.final, targets, padding_mask, logits)
        if two_streams and (self.aux or output.alpha is None):
            parts["image"] = self.loss(output.image, targets, padding_mask, output.image_logits)
            parts["tag"] = self.loss(output.tag, targets, padding_mask, output.tag_logits)
        total = torch.stack(list(parts.values())).sum()
        return total, parts
