"""MAGNeto's total loss: the registered losses summed over a model's outputs, masked."""

from __future__ import annotations

import torch
from torch import nn

from magneto.model.architectures import ModelOutput
from magneto.train.loss_terms import LogProbs, MultiLabelLoss

__all__ = ["TotalLoss", "gated_output"]


class TotalLoss(nn.Module):
    """L_total = L_g + L_it + L_t (paper eq. 5), each on its own output, all masked.

    ``loss`` is used for the final output L_g (and a baseline's single output); ``aux_loss``
    (default: ``loss``) for the stream outputs L_it and L_t. ``aux=False`` keeps only L_g.
    The loss follows the output, not the model: the gate-less pre-training model, which has
    only its two streams, gets L_u = L_it + L_t (paper section 5.2) with ``aux_loss`` whatever
    ``aux`` says.

    Stability: every stream output is scored from its logit. MAGNeto's gated output
    O = alpha O_it + (1 - alpha) O_t has no logit of its own, so it is scored from
    ``LogProbs.mixture``: log O = logaddexp(log alpha + logsigmoid(s_it), log(1 - alpha) +
    logsigmoid(s_t)) and log(1 - O) likewise with logsigmoid(-s), in float32 (alpha from the
    gate, cast to float32); its "logit" (ZLPR, sigmoidF1) is log O - log(1 - O), exact and
    finite. An output without stream logits falls back to ``output.final``'s probabilities.
    """

    def __init__(
        self, loss: MultiLabelLoss, aux: bool = True, aux_loss: MultiLabelLoss | None = None
    ) -> None:
        super().__init__()
        self.loss = loss
        self.aux_loss = loss if aux_loss is None else aux_loss
        self.aux = aux

    def forward(
        self, output: ModelOutput, targets: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        two_streams = output.tag is not None and output.image is not None
        if output.alpha is not None:  # MAGNeto: gated output, optionally both auxiliaries
            parts["final"] = self.loss(gated_output(output), targets, padding_mask)
        elif not two_streams:  # a baseline: its single output, with that stream's logits
            logits = output.tag_logits if output.tag is not None else output.image_logits
            parts["final"] = self.loss(output.final, targets, padding_mask, logits)
        if two_streams and (self.aux or output.alpha is None):
            assert output.image is not None and output.tag is not None
            parts["image"] = self.aux_loss(output.image, targets, padding_mask, output.image_logits)
            parts["tag"] = self.aux_loss(output.tag, targets, padding_mask, output.tag_logits)
        total = torch.stack(list(parts.values())).sum()
        return total, parts


def gated_output(output: ModelOutput) -> LogProbs | torch.Tensor:
    """The final output in float32 logs from the stream logits and the gate, when it has them."""
    if output.alpha is None or output.image_logits is None or output.tag_logits is None:
        return output.final
    return LogProbs.mixture(
        output.alpha,
        LogProbs.from_logits(output.image_logits),
        LogProbs.from_logits(output.tag_logits),
    )
