from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from magneto.errors import MagnetoError
from magneto.model.architectures import ModelOutput, build_model
from magneto.model.config import ModelConfig
from magneto.train.loss_registry import LOSSES, LossError, build_loss, check_loss
from magneto.train.loss_terms import LogProbs
from magneto.train.total_loss import TotalLoss


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
    loss = build_loss("sigmoidf1", beta=beta, eta=eta, reduction="item")
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
    with pytest.raises(
        ValueError,
        match=r"has no parameter 'gama'; accepted: gamma: float = 2.0, alpha: float \| None = None",
    ):
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


@pytest.mark.slow
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


# --- numerics: every loss from float32 logits --------------------------------------------------

# Losses (and settings) that must give a confident false positive the gradient BCE-with-logits
# gives it (about 1). Left out by design: Dice and sigmoidF1 (bounded surrogates of the
# probability / of S(u), whose gradient fades like p(1 - p) or S(1 - S) on a saturated output),
# and ASL/APL with a clip p_th > 0 (probability shifting caps -log(1 - p_r) at -log(p_th), so a
# very confident negative's gradient fades with p(1 - p): the APL paper's "very hard negatives
# are suspected to be mislabelled"); their clip = 0 forms are checked.
CONFIDENT_FP = [
    ("bce", {}),
    ("bce_dice", {}),
    ("focal", {}),
    ("focal", {"gamma": 1.0, "alpha": None}),
    ("asl", {"clip": 0.0}),
    ("apl", {"clip": 0.0}),
    ("apl", {"clip": 0.0, "gamma_neg": 2.0, "beta1": 1.5}),
    ("zlpr", {}),
]
BY_DESIGN = [("dice", {}), ("sigmoidf1", {}), ("asl", {}), ("apl", {})]


def _bf16_head(logit: float, name: str) -> torch.nn.Linear:
    head = torch.nn.Linear(1, 1, bias=False)
    head.weight.data.fill_(logit)
    head.name = name
    return head


def _bf16_logits(head: torch.nn.Linear) -> torch.Tensor:
    """(1, 2) logits as a model under bf16 autocast makes them: [logit, 0 (padding)]."""
    logits = head(torch.tensor([[[1.0], [0.0]]])).squeeze(-1)
    assert logits.dtype == torch.bfloat16
    return logits


def _reference_gradient(logit: float) -> float:
    s = torch.tensor([logit], requires_grad=True)
    F.binary_cross_entropy_with_logits(s, torch.zeros(1)).backward()
    return float(s.grad)


@pytest.mark.parametrize(("name", "params"), CONFIDENT_FP + BY_DESIGN)
def test_a_confident_false_positive_keeps_its_gradient_under_bf16(name, params):
    targets = torch.zeros(1, 2)
    mask = torch.tensor([[False, True]])
    head = _bf16_head(10.0, "stream")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = _bf16_logits(head)
        probs = torch.sigmoid(logits)
        assert probs[0, 0] == 1.0  # what a loss on probabilities would see
        loss = build_loss(name, **params)(probs, targets, mask, logits)
    loss.backward()
    grad, expected = float(head.weight.grad), _reference_gradient(10.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    if (name, params) in CONFIDENT_FP:
        assert grad == pytest.approx(expected, rel=0.05)
    else:
        assert 0.0 <= grad < 1e-2


@pytest.mark.parametrize(("name", "params"), CONFIDENT_FP + BY_DESIGN)
def test_the_gated_output_keeps_its_gradient_under_bf16(name, params):
    targets = torch.zeros(1, 2)
    mask = torch.tensor([[False, True]])
    tag_head, image_head = _bf16_head(10.0, "tag"), _bf16_head(10.0, "image")
    gate_logit = torch.tensor(-0.8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tag_logits, image_logits = _bf16_logits(tag_head), _bf16_logits(image_head)
        o_t, o_it = torch.sigmoid(tag_logits), torch.sigmoid(image_logits)
        alpha = torch.sigmoid(gate_logit.bfloat16()).expand(1, 2)
        final = alpha * o_it + (1 - alpha) * o_t
        assert final[0, 0] == 1.0
        output = ModelOutput(final, o_t, o_it, alpha, tag_logits, image_logits)
        total, parts = TotalLoss(build_loss(name, **params), aux=False)(output, targets, mask)
    assert set(parts) == {"final"} and total.dtype == torch.float32
    total.backward()
    a = float(alpha[0, 0].detach())
    image_grad, tag_grad = float(image_head.weight.grad), float(tag_head.weight.grad)
    expected = _reference_gradient(10.0)  # both streams at 10: O = sigmoid(10)
    assert torch.isfinite(gate_logit.grad)
    if (name, params) in CONFIDENT_FP:
        assert image_grad + tag_grad == pytest.approx(expected, rel=0.05)
        assert image_grad == pytest.approx(a * expected, rel=0.05)
        assert tag_grad == pytest.approx((1 - a) * expected, rel=0.05)
    else:
        assert 0.0 <= image_grad + tag_grad < 1e-2


def test_stream_losses_are_bce_with_logits_beyond_the_old_clamp():
    logits = torch.tensor([[30.0, -25.0, 3.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[False, False, False, True]])
    loss = build_loss("bce")(torch.sigmoid(logits), targets, mask, logits)
    expected = F.binary_cross_entropy_with_logits(logits[~mask], targets[~mask])
    assert torch.allclose(loss, expected, atol=1e-5) and loss > 18  # -log(1e-7) = 16.1


def test_the_gated_output_in_logs_is_exact():
    torch.manual_seed(0)
    s_it, s_t = torch.randn(3, 5, dtype=torch.float64) * 8, torch.randn(3, 5, dtype=torch.float64)
    alpha = torch.rand(3, 5, dtype=torch.float64)
    o = alpha * torch.sigmoid(s_it) + (1 - alpha) * torch.sigmoid(s_t)
    mixed = LogProbs.mixture(alpha, LogProbs.from_logits(s_it), LogProbs.from_logits(s_t))
    assert mixed.log_p.dtype == torch.float32
    assert torch.allclose(mixed.log_p.double(), torch.log(o), atol=1e-5)
    assert torch.allclose(mixed.log_1mp.double(), torch.log1p(-o), atol=1e-5)
    assert torch.allclose(mixed.logits.double(), torch.logit(o), atol=1e-4)
    saturated = LogProbs.mixture(
        torch.tensor([1.0, 0.0]),
        LogProbs.from_logits(torch.tensor([40.0, 40.0])),
        LogProbs.from_logits(torch.tensor([-40.0, -40.0])),
    )
    assert torch.isfinite(saturated.log_p).all() and torch.isfinite(saturated.log_1mp).all()
    assert torch.allclose(saturated.logits, torch.tensor([40.0, -40.0]), atol=1e-3)


def test_a_saturated_gate_passes_the_whole_gradient_to_its_stream_and_no_nan():
    s_it = torch.tensor([[12.0, -12.0]], requires_grad=True)
    s_t = torch.tensor([[-12.0, 12.0]], requires_grad=True)
    alpha = torch.tensor([[1.0, 0.0]], requires_grad=True)  # a bf16 gate rounds to these
    final = alpha * torch.sigmoid(s_it) + (1 - alpha) * torch.sigmoid(s_t)
    output = ModelOutput(final, torch.sigmoid(s_t), torch.sigmoid(s_it), alpha, s_t, s_it)
    _, parts = TotalLoss(build_loss("bce"), aux=False)(output, torch.zeros(1, 2), None)
    parts["final"].backward()
    assert torch.allclose(parts["final"], torch.tensor(12.0), atol=1e-3)
    assert torch.allclose(s_it.grad, torch.tensor([[0.5, 0.0]]), atol=1e-4)
    assert torch.allclose(s_t.grad, torch.tensor([[0.0, 0.5]]), atol=1e-4)
    assert torch.isfinite(alpha.grad).all()


# --- the auxiliary outputs' own loss ------------------------------------------------------------


def _consistent_output(gated: bool = True) -> tuple[ModelOutput, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    tag_logits, image_logits = torch.randn(3, 4) * 3, torch.randn(3, 4) * 3
    o_t, o_it = torch.sigmoid(tag_logits), torch.sigmoid(image_logits)
    alpha = torch.rand(3, 4) if gated else None
    final = alpha * o_it + (1 - alpha) * o_t if gated else 0.5 * (o_t + o_it)
    targets = (torch.rand(3, 4) > 0.5).float()
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[2, 3:] = True
    output = ModelOutput(final, o_t, o_it, alpha, tag_logits, image_logits)
    return output, targets, mask


def test_the_aux_loss_reaches_the_auxiliary_outputs_only():
    output, targets, mask = _consistent_output()
    main, aux = build_loss("bce"), build_loss("zlpr")
    total, parts = TotalLoss(main, aux=True, aux_loss=aux)(output, targets, mask)
    assert set(parts) == {"final", "image", "tag"}
    assert torch.allclose(parts["final"], main(output.final, targets, mask), atol=1e-5)
    assert torch.allclose(parts["image"], aux(output.image, targets, mask, output.image_logits))
    assert torch.allclose(parts["tag"], aux(output.tag, targets, mask, output.tag_logits))
    assert not torch.allclose(parts["tag"], main(output.tag, targets, mask, output.tag_logits))
    assert torch.allclose(total, sum(parts.values()))
    _, alone = TotalLoss(main, aux=False, aux_loss=aux)(output, targets, mask)
    assert set(alone) == {"final"} and torch.allclose(alone["final"], parts["final"])
    default = TotalLoss(main)
    assert default.aux_loss is main


def test_the_gateless_pretraining_model_uses_the_aux_loss_on_its_streams():
    output, targets, mask = _consistent_output(gated=False)
    main, aux = build_loss("bce"), build_loss("focal", gamma=1.0)
    for flag in (True, False):
        _, parts = TotalLoss(main, aux=flag, aux_loss=aux)(output, targets, mask)
        assert set(parts) == {"image", "tag"}
        assert torch.allclose(parts["tag"], aux(output.tag, targets, mask, output.tag_logits))
    baseline = ModelOutput(output.tag, tag=output.tag, tag_logits=output.tag_logits)
    _, parts = TotalLoss(main, aux_loss=aux)(baseline, targets, mask)
    assert set(parts) == {"final"}
    assert torch.allclose(parts["final"], main(output.tag, targets, mask, output.tag_logits))


# --- validation up front ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "fragments"),
    [
        ("hinge", {}, ["unknown loss 'hinge'", "bce_dice", "zlpr"]),
        (None, {}, ["unknown loss None"]),
        ("bce", {"args": 1}, ["loss bce has no parameter 'args'", "accepted: none"]),
        ("focal", {"gama": 2}, ["focal", "'gama'", "gamma: float = 2.0", "alpha: float | None"]),
        ("focal", {"gamma": "2"}, ["focal: gamma must be float, not '2'", "gamma: float = 2.0"]),
        ("focal", {"gamma": True}, ["gamma must be float, not True"]),
        ("focal", {"gamma": float("nan")}, ["gamma must be float, not nan"]),
        ("focal", {"alpha": 1.5}, ["focal: alpha must be in [0, 1]", "alpha: float | None"]),
        ("dice", {"smooth": None}, ["dice: smooth must be float, not None", "smooth: float"]),
        ("apl", {"clip": 1.0}, ["apl: clip (p_th) must be in [0, 1)", "beta1: float = 1.0"]),
        ("sigmoidf1", {"reduction": "micro"}, ["reduction must be 'item' | 'batch'"]),
        ("zlpr", [("soft", True)], ["zlpr: parameters must be a mapping", "accepted: none"]),
    ],
)
def test_bad_losses_are_one_line_errors_at_config_time(name, params, fragments):
    with pytest.raises(LossError) as caught:
        check_loss(name, params)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, MagnetoError)
    if isinstance(params, dict):
        with pytest.raises(LossError, match="loss"):  # never a TypeError
            build_loss(name, **params)


def test_good_losses_pass_the_config_time_check():
    check_loss("bce-dice", {"smooth": 2})  # an int for a float
    check_loss("focal", {"alpha": None, "gamma": 0})
    check_loss("focal", {"alpha": 0.25})
    check_loss("sigmoidf1", {"reduction": "item", "beta": 5})
    check_loss("zlpr", None)
    assert build_loss("FOCAL", gamma=3).gamma == 3


# --- soft ZLPR and batch sigmoidF1 --------------------------------------------------------------


def test_soft_zlpr_has_its_optimum_at_sigmoid_2s():
    t = torch.tensor([[0.3, 0.8, 0.55, 0.05, 1.0, 0.0]])
    mask = torch.tensor([[False, False, False, False, True, True]])
    zlpr = build_loss("zlpr")
    at_optimum = (torch.logit(t.clamp(0.01, 0.99)) / 2).requires_grad_()
    zlpr(torch.sigmoid(at_optimum), t, mask, at_optimum).backward()
    assert torch.allclose(at_optimum.grad, torch.zeros_like(t), atol=1e-6)
    s = torch.zeros_like(t, requires_grad=True)
    opt = torch.optim.LBFGS([s], lr=0.5, max_iter=200, tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        value = zlpr(torch.sigmoid(s), t, mask, s)
        value.backward()
        return value

    opt.step(closure)
    assert torch.allclose(torch.sigmoid(2 * s)[~mask], t[~mask], atol=1e-3)
    assert not torch.allclose(torch.sigmoid(s)[~mask], t[~mask], atol=1e-2)


def test_batch_sigmoid_f1_is_one_minus_f1_over_the_batch():
    torch.manual_seed(2)
    logits = torch.randn(4, 6).sign() * (torch.rand(4, 6) + 0.5)
    targets = (torch.rand(4, 6) > 0.4).float()
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[1, 3:] = True
    mask[3, 1:] = True
    real = ~mask
    pred, y = (logits > 0)[real].float(), targets[real]
    tp, fp, fn = (pred * y).sum(), (pred * (1 - y)).sum(), ((1 - pred) * y).sum()
    f1 = 2 * tp / (2 * tp + fp + fn)
    steep = build_loss("sigmoidf1", beta=50.0)
    assert steep.reduction == "batch"
    assert torch.allclose(steep(torch.sigmoid(logits), targets, mask, logits), 1 - f1, atol=1e-4)
    per_item = build_loss("sigmoidf1", beta=50.0, reduction="item")(
        torch.sigmoid(logits), targets, mask, logits
    )
    expected = []
    for i in range(4):
        p, t = (logits[i] > 0)[real[i]].float(), targets[i][real[i]]
        tp_i, rest = (p * t).sum(), (p * (1 - t)).sum() + ((1 - p) * t).sum()
        expected.append(1 - 2 * tp_i / (2 * tp_i + rest + 1e-7))
    assert torch.allclose(per_item, torch.stack(expected).mean(), atol=1e-4)
    assert not torch.allclose(per_item, 1 - f1, atol=1e-3)
