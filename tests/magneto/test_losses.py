from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from magneto.losses import LOSSES, TotalLoss, build_loss
from magneto.model import ModelConfig, ModelOutput, build_model


def _batch():
    torch.manual_seed(0)
    probs = torch.rand(4, 6) * 0.98 + 0.01
    targets = (torch.rand(4, 6) > 0.5).float()
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[1, 4:] = True
    mask[3, 2:] = True
    targets[mask] = 0
    return probs, targets, mask


def test_bce_matches_torch_on_real_positions():
    probs, targets, mask = _batch()
    loss = build_loss("bce")(probs, targets, mask)
    expected = F.binary_cross_entropy(probs[~mask], targets[~mask])
    assert torch.allclose(loss, expected, atol=1e-6)


def test_dice_formula_per_item_with_smooth_one():
    probs, targets, mask = _batch()
    loss = build_loss("dice")(probs, targets, mask)
    per_item = []
    for i in range(4):
        p, y = probs[i][~mask[i]], targets[i][~mask[i]]
        per_item.append(1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1))
    assert torch.allclose(loss, torch.stack(per_item).mean(), atol=1e-6)
    assert torch.allclose(
        build_loss("bce-dice")(probs, targets, mask),
        build_loss("bce")(probs, targets, mask) + loss,
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_ignores_padding_and_has_finite_gradients(name):
    probs, targets, mask = _batch()
    loss_fn = build_loss(name)
    base = loss_fn(probs, targets, mask)
    garbage = probs.clone()
    garbage[mask] = torch.rand(int(mask.sum()))
    garbage_targets = targets.clone()
    garbage_targets[mask] = 1.0
    assert torch.allclose(loss_fn(garbage, garbage_targets, mask), base, atol=1e-6)
    extreme = torch.tensor([[0.0, 1.0, 0.5, 1e-9]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    value = loss_fn(extreme, y, torch.zeros_like(y, dtype=torch.bool))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(extreme.grad).all()
    good = loss_fn(torch.tensor([[0.99, 0.01]]), torch.tensor([[1.0, 0.0]]))
    bad = loss_fn(torch.tensor([[0.01, 0.99]]), torch.tensor([[1.0, 0.0]]))
    assert good < bad


def test_focal_with_gamma_zero_is_bce():
    probs, targets, mask = _batch()
    assert torch.allclose(
        build_loss("focal", gamma=0.0)(probs, targets, mask),
        build_loss("bce")(probs, targets, mask),
        atol=1e-6,
    )


def test_asl_is_apl_with_taylor_coefficients_and_reduces_to_bce():
    probs, targets, mask = _batch()
    asl = build_loss("asl", gamma_neg=3.0, clip=0.05)(probs, targets, mask)
    apl = build_loss("apl", gamma_neg=3.0, clip=0.05, alpha1=1.0, alpha2=0.5, beta1=1.0)
    assert torch.allclose(asl, apl(probs, targets, mask))
    plain = build_loss("apl", gamma_neg=0.0, clip=0.0, alpha1=1.0, alpha2=0.5, beta1=1.0)
    assert torch.allclose(plain(probs, targets, mask), build_loss("bce")(probs, targets, mask))
    # alpha1 adds (alpha1 - 1)(1 - p) to the positive term.
    p, y = torch.tensor([[0.3]]), torch.tensor([[1.0]])
    shifted = build_loss("apl", gamma_pos=0.0, alpha1=2.0)(p, y)
    assert torch.allclose(shifted, -torch.log(p[0, 0]) + 0.7, atol=1e-6)
    # Negatives below the clip threshold p_th cost nothing.
    assert build_loss("asl", clip=0.1)(torch.tensor([[0.05]]), torch.tensor([[0.0]])) == 0


def test_sigmoid_f1_matches_the_paper_definition():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    probs = torch.sigmoid(logits)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    beta, eta = 2.0, 0.5
    s = torch.sigmoid(beta * (logits + eta))
    tp, fp, fn = (s * y).sum(1), (s * (1 - y)).sum(1), ((1 - s) * y).sum(1)
    expected = (1 - 2 * tp / (2 * tp + fn + fp)).mean()
    loss = build_loss("sigmoidf1", beta=beta, eta=eta)
    assert torch.allclose(loss(probs, y, logits=logits), expected, atol=1e-6)
    assert torch.allclose(loss(probs, y), expected, atol=1e-5)  # logit(p) when no logits


def test_zlpr_matches_the_paper_definition():
    logits = torch.tensor([[2.0, -1.0, 0.5, 9.0]])
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    mask = torch.tensor([[False, False, False, True]])
    expected = torch.log(1 + torch.exp(-logits[0, 0]) + torch.exp(-logits[0, 2])) + torch.log(
        1 + torch.exp(logits[0, 1])
    )
    loss = build_loss("zlpr")(torch.sigmoid(logits), y, mask, logits=logits)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_registry_errors_are_clear():
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of apl, asl, bce"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="has no parameter 'gama'; accepted: gamma, alpha"):
        build_loss("focal", gama=2)
    with pytest.raises(ValueError, match=r"probs .* and targets .* differ"):
        build_loss("bce")(torch.rand(2, 3), torch.rand(2, 4))


def test_losses_run_in_float32_under_autocast():
    probs, targets, mask = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = build_loss("bce_dice")(probs.bfloat16(), targets, mask)
    assert loss.dtype == torch.float32


def test_total_loss_parts_follow_the_model():
    probs, targets, mask = _batch()
    alpha = torch.full_like(probs, 0.3)
    magneto = ModelOutput(probs, probs * 0.9, probs * 0.8, alpha)
    base = build_loss("bce_dice")
    total, parts = TotalLoss(base)(magneto, targets, mask)
    assert set(parts) == {"final", "image", "tag"}
    expected = (
        base(probs, targets, mask)
        + base(probs * 0.8, targets, mask)
        + base(probs * 0.9, targets, mask)
    )
    assert torch.allclose(total, expected)
    total, parts = TotalLoss(base, aux=False)(magneto, targets, mask)
    assert set(parts) == {"final"} and torch.allclose(total, base(probs, targets, mask))
    pretrain = ModelOutput(probs, probs * 0.9, probs * 0.8, None)
    assert set(TotalLoss(base, aux=False)(pretrain, targets, mask)[1]) == {"image", "tag"}
    baseline = ModelOutput(probs, tag=probs)
    assert set(TotalLoss(base)(baseline, targets, mask)[1]) == {"final"}


def test_total_loss_trains_every_architecture():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 64, 64)
    tags = torch.randint(0, 12, (4, 5))
    targets = (torch.rand(4, 5) > 0.5).float()
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for arch in ("magneto", "ff", "tf-t", "tf-it"):
        model = build_model(ModelConfig(architecture=arch, vocab_size=12, dropout=0.0))
        criterion = TotalLoss(build_loss("bce_dice"))
        opt = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9
        )
        losses = []
        for _ in range(15):
            loss, _ = criterion(model(images, tags, mask), targets, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0] * 0.8, arch
