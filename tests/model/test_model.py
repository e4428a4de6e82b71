from __future__ import annotations

import os
import urllib.error

import pytest
import torch
from pydantic import ValidationError
from torchvision import models

from magneto.errors import WeightsError
from magneto.model.architectures import build_model
from magneto.model.backbone import imagenet_weights_url
from magneto.model.config import ModelConfig

ARCHS = ("magneto", "ff", "tf-t", "tf-it")


def _inputs(batch=3, length=5, vocab=20, size=64):
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    tags = torch.randint(0, vocab, (batch, length))
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, 3:] = True
    tags[mask] = vocab
    return images, tags, mask


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_and_backward_on_cpu(arch):
    model = build_model(ModelConfig(architecture=arch, vocab_size=20))
    model.train()
    images, tags, mask = _inputs()
    out = model(images, tags, mask)
    assert out.final.shape == (3, 5)
    real = out.final[~mask]
    assert ((real > 0) & (real < 1)).all()
    assert (out.final[mask] == 0).all()  # padded positions are 0, never a score
    out.final[~mask].sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert any(p.grad.abs().sum() > 0 for p in trainable)
    assert (out.tag is not None) == (arch in ("magneto", "ff", "tf-t"))
    assert (out.image is not None) == (arch in ("magneto", "tf-it"))


def test_magneto_output_is_the_gated_mix_of_both_streams():
    model = build_model(ModelConfig(vocab_size=20)).eval()
    images, tags, mask = _inputs()
    out = model(images, tags, mask)
    assert out.alpha.shape == (3, 5)
    assert ((out.alpha[~mask] > 0) & (out.alpha[~mask] < 1)).all()
    mix = out.alpha * out.image + (1 - out.alpha) * out.tag
    assert torch.allclose(out.final, mix)
    assert torch.allclose(out.tag[~mask], torch.sigmoid(out.tag_logits[~mask]))
    assert torch.allclose(out.image[~mask], torch.sigmoid(out.image_logits[~mask]))


def test_gate_less_pretraining_model_has_two_outputs():
    model = build_model(ModelConfig(vocab_size=20, gating=False)).eval()
    out = model(*_inputs())
    assert out.alpha is None and model.gate is None
    assert torch.allclose(out.final, 0.5 * (out.tag + out.image))


def test_tags_are_a_set_outputs_follow_a_permutation():
    model = build_model(ModelConfig(vocab_size=20)).eval()
    images, tags, mask = _inputs()
    perm = torch.tensor([2, 0, 1, 4, 3])
    mask[:] = False
    a = model(images, tags, mask).final
    b = model(images, tags[:, perm], mask).final
    assert torch.allclose(a[:, perm], b, atol=1e-5)


def test_cached_trunk_features_give_the_same_output():
    model = build_model(ModelConfig(vocab_size=20)).eval()
    images, tags, mask = _inputs()
    features = model.image_extractor.trunk_features(images)
    assert features.shape == (3, 512, 2, 2)
    assert torch.allclose(
        model(images, tags, mask).final, model(None, tags, mask, image_features=features).final
    )
    with pytest.raises(ValueError, match="needs images"):
        model(None, tags, mask)


def test_frozen_backbone_gets_no_gradients_and_keeps_its_statistics():
    model = build_model(ModelConfig(vocab_size=20, freeze_backbone="all"))
    model.train()
    extractor = model.image_extractor
    assert all(not m.training for m in extractor.trunk)
    before = extractor.trunk[1][0].bn1.running_mean.clone()
    out = model(*_inputs())
    out.final.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in extractor.trunk.parameters())
    assert extractor.conv.weight.grad is not None and extractor.bn.weight.grad is not None
    assert torch.equal(before, extractor.trunk[1][0].bn1.running_mean)


@pytest.mark.parametrize(("freeze", "frozen_modules"), [("none", 0), (0, 1), (3, 4), ("all", 5)])
def test_freezing_the_first_k_stages(freeze, frozen_modules):
    model = build_model(ModelConfig(vocab_size=20, freeze_backbone=freeze))
    trunk = model.image_extractor.trunk
    for i, module in enumerate(trunk):
        expected = i >= frozen_modules
        assert all(p.requires_grad == expected for p in module.parameters()), (freeze, i)
    model.train()
    assert [m.training for m in trunk] == [i >= frozen_modules for i in range(5)]
    model(*_inputs()).final.sum().backward()
    for i, module in enumerate(trunk):
        grads = [p.grad is not None for p in module.parameters()]
        assert all(grads) if i >= frozen_modules else not any(grads)


def test_resnet50_large_scale_freezing():
    config = ModelConfig(vocab_size=20, backbone="resnet50", freeze_backbone=3, d_model=64, heads=8)
    model = build_model(config)
    assert model.image_extractor.conv.in_channels == 2048
    assert [any(p.requires_grad for p in m.parameters()) for m in model.image_extractor.trunk] == [
        False,
        False,
        False,
        False,
        True,
    ]


def test_imagenet_weights_offline_fail_with_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached copy

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(vocab_size=20, backbone_weights="imagenet"))
    message = str(info.value)
    assert "\n" not in message
    assert "could not download the ImageNet weights for resnet18" in message
    assert imagenet_weights_url("resnet18") in message
    assert "--backbone-weights /path/to/resnet18-f37072fd.pth" in message


def test_local_backbone_state_dict_file_is_loaded(tmp_path):
    torch.manual_seed(123)
    reference = models.resnet18()
    plain = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pt"
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, wrapped
    )
    for path in (plain, wrapped):
        model = build_model(ModelConfig(vocab_size=20, backbone_weights=str(path)))
        trunk = model.image_extractor.trunk
        assert torch.equal(trunk[0][0].weight, reference.conv1.weight)
        assert torch.equal(trunk[4][1].bn2.running_var, reference.layer4[1].bn2.running_var)
        assert torch.equal(
            trunk[2][0].downsample[0].weight, reference.layer2[0].downsample[0].weight
        )


@pytest.mark.slow
def test_bad_backbone_files_are_refused(tmp_path):
    wrong = tmp_path / "r50.pth"
    torch.save(models.resnet50().state_dict(), wrong)
    with pytest.raises(WeightsError, match="do not fit resnet18"):
        build_model(ModelConfig(vocab_size=20, backbone_weights=str(wrong)))
    partial = tmp_path / "partial.pth"
    torch.save(
        {k: v for k, v in models.resnet18().state_dict().items() if "layer4" not in k}, partial
    )
    with pytest.raises(WeightsError, match="missing keys"):
        build_model(ModelConfig(vocab_size=20, backbone_weights=str(partial)))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read backbone weights"):
        build_model(ModelConfig(vocab_size=20, backbone_weights=str(garbage)))
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": os.system}, evil)  # a reference to code, never called
    with pytest.raises(WeightsError, match=r"global posix\.system") as refused:
        build_model(ModelConfig(vocab_size=20, backbone_weights=str(evil)))
    assert "never unpickles" in str(refused.value) and "weights_only" not in str(refused.value)
    with pytest.raises(WeightsError, match="not found"):
        build_model(ModelConfig(vocab_size=20, backbone_weights=str(tmp_path / "nope.pth")))


@pytest.mark.parametrize(
    "bad",
    [
        {"vocab_size": 0},
        {"vocab_size": -3},
        {"vocab_size": 5, "d_model": 130, "heads": 4},
        {"vocab_size": 5, "freeze_backbone": 5},
        {"vocab_size": 5, "dropout": 1.0},
        {"vocab_size": 5, "architecture": "bert"},
        {"vocab_size": 5, "backbone": "vgg16"},
        {"vocab_size": 5, "unknown_field": 1},
    ],
)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        ModelConfig(**bad)


def test_weights_none_spellings():
    assert ModelConfig(vocab_size=3, backbone_weights="none").backbone_weights is None
    assert ModelConfig(vocab_size=3, backbone_weights="").backbone_weights is None


def test_encoder_computes_what_torch_transformer_encoder_computes():
    """Same parameters, same math as nn.TransformerEncoder (post-norm, ReLU) on real tokens."""
    from torch import nn

    from magneto.model.layers import Encoder, ImageStream
    from magneto.model.packing import Packing

    torch.manual_seed(0)
    ours = Encoder(32, 4, 64, 0.0, 2).eval()
    layer = nn.TransformerEncoderLayer(32, 4, 64, 0.0, batch_first=True, norm_first=False)
    reference = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    missing = reference.load_state_dict(ours.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(3, 6, 32)
    mask = torch.tensor([[False] * 6, [False] * 2 + [True] * 4, [False] * 5 + [True]])
    packing = Packing(mask)
    expected = reference(x, src_key_padding_mask=mask)
    got = packing.unpack(ours(packing.pack(x), packing))
    assert torch.allclose(got[~mask], expected[~mask], atol=1e-5)

    stream = ImageStream(32, 4, 64, 0.0, 1).eval()
    regions = torch.randn(3, 9, 32)
    fused = stream.attend(packing.pack(x), regions, packing)
    mha_out, _ = stream.attention(x, regions, regions, need_weights=False)
    assert torch.allclose(packing.unpack(fused)[~mask], mha_out[~mask], atol=1e-5)


# Which logits each architecture returns: the tag bias is added to every one of them.
LOGITS = {
    "magneto": ("tag_logits", "image_logits"),
    "ff": ("tag_logits",),
    "tf-t": ("tag_logits",),
    "tf-it": ("image_logits",),
}


@pytest.mark.parametrize("arch", ARCHS)
def test_tag_bias_adds_each_tags_counted_log_odds_to_its_logits(arch):
    torch.manual_seed(1)
    plain = build_model(ModelConfig(architecture=arch, vocab_size=20)).eval()
    biased = build_model(ModelConfig(architecture=arch, vocab_size=20, tag_bias=True)).eval()
    missing, unexpected = biased.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["tag_bias.logit.weight"] and not unexpected
    images, tags, mask = _inputs()
    with torch.no_grad():
        before = biased(images, tags, mask)  # a fresh bias is 0: nothing changes
        rates = torch.rand(20) * 0.9 + 0.05
        biased.tag_bias.start_from(rates)
        want, got = plain(images, tags, mask), biased(images, tags, mask)
    log_odds = torch.log(rates / (1 - rates))
    for name in LOGITS[arch]:
        assert torch.allclose(getattr(before, name), getattr(want, name), atol=1e-6)
        shift = getattr(got, name) - getattr(want, name)
        assert torch.allclose(shift[~mask], log_odds[tags[~mask]], atol=1e-5), name
        assert (getattr(got, name)[mask] == 0).all()  # padding still gets nothing
    assert torch.allclose(got.final[~mask], got.final[~mask].clamp(0, 1))
    assert not torch.allclose(got.final[~mask], want.final[~mask])


def test_tag_bias_needs_one_rate_per_tag():
    model = build_model(ModelConfig(architecture="ff", vocab_size=20, tag_bias=True))
    with pytest.raises(ValueError, match="one rate per vocabulary tag \\(20\\)"):
        model.tag_bias.start_from(torch.full((21,), 0.5))
