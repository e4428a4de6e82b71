"""magneto import-reference: a best_f1.pth of the original implementation, as our checkpoint.

The fake reference file has exactly the names and shapes of the original code's NUS-WIDE state
dict (``reference_state_dict.txt``, a copy of ``shared/reference/state_dict.txt``), distinct
random values, and the layout its Trainer saves: model, optimizer, best metrics as numpy
scalars, and ``config`` = ``vars(opt)``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from magneto.cli.main import main
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from magneto.infer.predictor import Predictor, PredictRequest
from magneto.infer.reference_import import (
    ReferenceImportError,
    convert_state,
    import_reference,
    infer_config,
)
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from tests.conftest import write_jpeg

LISTING = Path(__file__).with_name("reference_state_dict.txt")
SHARED_LISTING = Path(__file__).parents[3] / "shared" / "reference" / "state_dict.txt"
WORDS = [f"tag{i:02d}" for i in range(81)]
CONFIG = {  # what vars(opt) of the reference's train.py holds, for the paper's NUS-WIDE run
    "d_model": 128,
    "t_blocks": 2,
    "t_heads": 4,
    "t_dim_feedforward": 512,
    "i_blocks": 1,
    "i_heads": 4,
    "i_dim_feedforward": 512,
    "g_dim_feedforward": 512,
    "dropout": 0.3,
    "img_backbone": "resnet18",
    "vocab_path": "data/vocab.csv",
    "max_len": 16,
    "threshold": 0.45,
    "device": "cuda:0",
}
SNEAKY_CALLS: list[str] = []


class Sneaky:
    """An object a weights-only load must refuse: unpickling it would run its code."""

    def __setstate__(self, state: dict) -> None:
        SNEAKY_CALLS.append("unpickled")


def listing() -> dict[str, tuple[list[int], str]]:
    rows = [line.split("\t") for line in LISTING.read_text().splitlines() if line[:1] != "#"]
    return {key: (json.loads(shape), dtype) for key, shape, dtype, _ in rows}


def reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random values, scaled like trained weights so outputs do not saturate."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, (key, (shape, dtype)) in enumerate(listing().items()):
        noise = torch.randn(shape, generator=gen)
        if dtype == "int64":
            state[key] = torch.tensor(1000 + i)
        elif key.endswith("running_var"):
            state[key] = 1.0 + 0.2 * noise.abs()
        elif len(shape) >= 2:
            state[key] = noise / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(".weight"):  # LayerNorm and BatchNorm scales
            state[key] = 1.0 + 0.1 * noise
        else:
            state[key] = 0.1 * noise
    return state


def save_reference(path: Path, state: dict, config=CONFIG, legacy=False, **extra) -> Path:
    model = OrderedDict(state)  # as nn.Module.state_dict() returns it
    model._metadata = OrderedDict({"": {"version": 1}, "tag_embedder": {"version": 1}})
    momentum = {0: {"momentum_buffer": torch.zeros(1, 128)}}
    payload = {
        "model": model,
        "optimizer": {"state": momentum, "param_groups": [{"lr": 0.01, "params": [0]}]},
        "best_val_loss": np.minimum(np.inf, 0.4125),
        "best_val_f1": np.maximum(0, np.float64(0.7321)),
        "best_val_precision": np.float64(0.7),
        "best_val_recall": np.float32(0.75),
        "config": config,
        **extra,
    }
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


def save_vocab(path: Path, words: list[str] = WORDS) -> Path:
    Vocabulary(words).save(path)
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    state = reference_state()
    ref, vocab = save_reference(root / "best_f1.pth", state), save_vocab(root / "vocab.csv")
    return state, ref, vocab, import_reference(ref, vocab)


def test_listing_is_the_shared_one():
    if not SHARED_LISTING.is_file():
        pytest.skip("shared/reference/state_dict.txt is not next to the repository")
    assert LISTING.read_text() == SHARED_LISTING.read_text()


def test_every_reference_tensor_lands_in_its_place(imported):
    state, _, _, result = imported
    ours = result.checkpoint.model_state
    assert len(state) == 180 and len(ours) == 176
    attn = "tag_to_img.attn."
    for kind in ("weight", "bias"):  # separate q, k, v layers -> one in_proj, in that order
        fused = ours[f"image_stream.attention.in_proj_{kind}"]
        for part, chunk in zip("qkv", fused.chunk(3), strict=True):
            assert torch.equal(chunk, state[f"{attn}{part}_linear.{kind}"])
    # Every other tensor appears exactly once, unchanged (the values are distinct).
    by_content = {(t.dtype, t.shape, t.numpy().tobytes()): k for k, t in ours.items()}
    placed = {
        key: by_content[(t.dtype, t.shape, t.numpy().tobytes())]
        for key, t in state.items()
        if not key.startswith(f"{attn}") or key.startswith(f"{attn}out.")
    }
    assert len(placed) == len(set(placed.values())) == 174
    assert {k: placed[k] for k in SPOT_CHECKS} == SPOT_CHECKS


SPOT_CHECKS = {  # reference -> ours, written out independently of the module's table
    "tag_embedder.embed.weight": "tag_embedder.embedding.weight",
    "tag_encoder.layers.1.self_attn.in_proj_weight": (
        "tag_stream.encoder.layers.1.self_attn.in_proj_weight"
    ),
    "tag_linear.bias": "tag_stream.head.bias",
    "img_feature_extractor.backbone.0.weight": "image_extractor.trunk.0.0.weight",
    "img_feature_extractor.backbone.1.num_batches_tracked": (
        "image_extractor.trunk.0.1.num_batches_tracked"
    ),
    "img_feature_extractor.backbone.4.0.conv1.weight": "image_extractor.trunk.1.0.conv1.weight",
    "img_feature_extractor.backbone.7.0.downsample.1.running_var": (
        "image_extractor.trunk.4.0.downsample.1.running_var"
    ),
    "img_feature_extractor.conv_1x1.weight": "image_extractor.conv.weight",
    "img_feature_extractor.bn.num_batches_tracked": "image_extractor.bn.num_batches_tracked",
    "tag_to_img.attn.out.weight": "image_stream.attention.out_proj.weight",
    "img_encoder.layers.0.norm2.bias": "image_stream.encoder.layers.0.norm2.bias",
    "img_linear.weight": "image_stream.head.weight",
    "gating.linear_1.weight": "gate.net.1.weight",
    "gating.linear_2.bias": "gate.net.4.bias",
}


def test_the_checkpoint_describes_the_reference_model(imported):
    _, ref, _, result = imported
    ckpt = result.checkpoint
    assert ckpt.model_config == ModelConfig(
        vocab_size=81, d_model=128, heads=4, tag_layers=2, image_layers=1, d_ff=512,
        gate_d_ff=512, dropout=0.3, backbone="resnet18", freeze_backbone="all",
    )  # fmt: skip
    assert ckpt.vocabulary.words == WORDS and ckpt.stage == "imported"
    assert ckpt.threshold == 0.45 and ckpt.input_size == 112  # the file's threshold
    assert ckpt.metrics == pytest.approx(
        {"best_val_loss": 0.4125, "best_val_f1": 0.7321, "best_val_precision": 0.7,
         "best_val_recall": 0.75}
    )  # fmt: skip
    assert all(type(v) is float for v in ckpt.metrics.values())
    assert ckpt.config["reference_config"]["vocab_path"] == "data/vocab.csv"
    assert ckpt.config["imported_from"] == str(ref)
    assert result.notes == ["heads 4: from the file's config"]


def reference_forward(ref, heads, images, src, mask):
    """The original MAGNeto.forward (eval mode), recomputed from its raw tensors with the
    reference's own module types (nn.TransformerEncoder, torchvision's ResNet children) and its
    hand-written tag-to-image attention. Returns (out, tag_out, img_out, img_weight)."""

    def sub(prefix):
        return {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}

    def linear(name, x):
        return F.linear(x, ref[f"{name}.weight"], ref[f"{name}.bias"])

    def encoder(name, x):
        d_ff, d_model = ref[f"{name}.layers.0.linear1.weight"].shape
        blocks = 1 + max(int(k.split(".")[2]) for k in ref if k.startswith(f"{name}."))
        layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout=0.3)
        module = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        module.load_state_dict(sub(f"{name}."))
        out = module.eval()(x.permute(1, 0, 2), src_key_padding_mask=mask)
        return torch.relu(out.permute(1, 0, 2))

    tag_vectors = F.embedding(src, ref["tag_embedder.embed.weight"])
    tag_out = encoder("tag_encoder", tag_vectors)
    backbone = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
    backbone.load_state_dict(sub("img_feature_extractor.backbone."))
    x = F.conv2d(backbone.eval()(images), *(ref[f"img_feature_extractor.conv_1x1.{p}"]
                                            for p in ("weight", "bias")))  # fmt: skip
    bn = sub("img_feature_extractor.bn.")
    x = F.batch_norm(x, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"])
    regions = x.permute(0, 2, 3, 1).flatten(1, 2)
    bs, d_k = src.shape[0], x.shape[1] // heads

    def split(name, t):
        return linear(f"tag_to_img.attn.{name}", t).view(bs, -1, heads, d_k).transpose(1, 2)

    q, k, v = split("q_linear", tag_vectors), split("k_linear", regions), split("v_linear", regions)
    scores = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), dim=-1)
    concat = (scores @ v).transpose(1, 2).reshape(bs, -1, heads * d_k)
    img_out = encoder("img_encoder", torch.relu(linear("tag_to_img.attn.out", concat)))
    hidden = torch.relu(linear("gating.linear_1", torch.cat((tag_out, img_out), dim=-1)))
    img_weight = torch.sigmoid(linear("gating.linear_2", hidden).squeeze(-1))
    tag_p = torch.sigmoid(linear("tag_linear", tag_out).squeeze(-1))
    img_p = torch.sigmoid(linear("img_linear", img_out).squeeze(-1))
    return (1 - img_weight) * tag_p + img_weight * img_p, tag_p, img_p, img_weight


def test_imported_model_computes_what_the_reference_computes(imported):
    state, _, _, result = imported
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 112, 112, generator=gen)
    src = torch.tensor([[3, 17, 40, 41, 66, 80], [5, 9, 12, 81, 81, 81]])
    mask = src == 81  # the padding index is the vocabulary size in both
    with torch.no_grad():
        expected = reference_forward(state, 4, images, src, mask)
        out = model_from_checkpoint(result.checkpoint, amp="off")(images, src, mask)
    real = ~mask
    for ours, theirs in zip((out.final, out.tag, out.image, out.alpha), expected, strict=True):
        values = theirs[real]  # varied and not saturated, so the comparison means something
        assert values.std() > 1e-3 and bool(((values > 0.01) & (values < 0.99)).all())
        torch.testing.assert_close(ours[real], values, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_round_trip_through_the_checkpoint_predictor_and_cli(imported, tmp_path, capsys):
    _, ref, vocab, result = imported
    path = save_checkpoint(result.checkpoint, tmp_path / "imported.ckpt")
    loaded = load_checkpoint(path)
    assert loaded.stage == "imported" and loaded.model_config == result.checkpoint.model_config
    image = write_jpeg(tmp_path / "photo.jpg", (160, 120))
    prediction = Predictor.from_checkpoint(path, device="cpu").predict(
        image, ["tag03", "TAG10", "Unicorn"]
    )
    scored = [t for t in prediction.tags if t.known]
    assert len(scored) == 2 and all(0 <= t.score <= 1 and 0 <= t.alpha <= 1 for t in scored)
    assert prediction.unknown_tags == ["Unicorn"] and prediction.threshold == 0.45

    out = tmp_path / "cli.ckpt"
    argv = ["import-reference", "--checkpoint", str(ref), "--vocab", str(vocab), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MAGNeto resnet18, d_model 128, 2 tag + 1 image layers, 4 heads, 81 tags" in printed
    assert "best_val_f1 0.7321" in printed and "magneto predict --checkpoint" in printed
    assert main(argv) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--threshold", "0.3", "--heads", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == 0.3 and report["model_config"]["heads"] == 2
    predict = ["predict", "--checkpoint", str(out), "--image", str(image), "--tags", "tag01,tag02"]
    assert main([*predict, "--json"]) == 0
    assert [t["tag"] for t in json.loads(capsys.readouterr().out)["tags"]] == ["tag01", "tag02"]


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["import-reference", "--checkpoint", "x.pth", "--out", "o.ckpt"])
    assert exc.value.code == 2 and "--vocab" in capsys.readouterr().err
    argv = ["import-reference", "--checkpoint", "x", "--vocab", "v", "--out", "o"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--threshold", "2"])
    assert exc.value.code == 2 and "must be between 0 and 1" in capsys.readouterr().err


def _drop(key):
    return lambda state: state.pop(key)


@pytest.mark.parametrize(
    ("change", "config_update", "fragment"),
    [
        (lambda s: s.update({"gating.linear_2.weight": torch.zeros(2, 512)}), {},
         "gating.linear_2.weight has shape [2, 512], expected [1, 512] (for gate.net.4.weight)"),
        (lambda s: s.update({"tag_to_img.attn.k_linear.weight": torch.zeros(128, 64)}), {},
         "tag_to_img.attn.k_linear.weight has shape [128, 64], expected [128, 128]"),
        (_drop("img_linear.bias"), {}, "the reference state dict has no img_linear.bias"),
        (_drop("img_feature_extractor.backbone.5.0.bn1.num_batches_tracked"), {},
         "has no img_feature_extractor.backbone.5.0.bn1.num_batches_tracked"),
        (lambda s: s.update({"extra.weight": torch.zeros(3)}), {},
         "the reference state dict has unexpected key extra.weight"),
        (None, {"t_blocks": 3}, "the file's config says t_blocks=3 but its weights have 2"),
        (None, {"i_heads": 8}, "t_heads=4 and i_heads=8 differ"),
    ],
)  # fmt: skip
def test_a_file_that_does_not_fit_is_one_clear_error(tmp_path, change, config_update, fragment):
    state = reference_state(1)
    if change is not None:
        change(state)
    ref = save_reference(tmp_path / "best_f1.pth", state, {**CONFIG, **config_update})
    with pytest.raises(ReferenceImportError) as exc:
        import_reference(ref, save_vocab(tmp_path / "vocab.csv"))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_a_file_that_is_no_checkpoint_is_one_clear_error(tmp_path):
    vocab = save_vocab(tmp_path / "vocab.csv")
    with pytest.raises(ReferenceImportError) as exc:
        import_reference(vocab, vocab)
    message = str(exc.value)  # torch's reason ("Unsupported operand 105"), not its advice
    assert message.startswith(f"cannot read {vocab} as a PyTorch checkpoint: ")
    assert "weights_only" not in message and "\n" not in message
    with pytest.raises(ReferenceImportError, match="reference checkpoint not found"):
        import_reference(tmp_path / "absent.pth", vocab)


def test_the_vocabulary_must_match_the_embedding(imported, tmp_path):
    _, ref, _, _ = imported
    with pytest.raises(ReferenceImportError, match="has 80 tags but the checkpoint's embedding"):
        import_reference(ref, save_vocab(tmp_path / "vocab.csv", WORDS[:80]))


def test_a_file_with_other_objects_is_refused_unopened(tmp_path):
    ref = save_reference(tmp_path / "evil.pth", reference_state(2), extra=Sneaky())
    with pytest.raises(ReferenceImportError) as exc:
        import_reference(ref, save_vocab(tmp_path / "vocab.csv"))
    message = str(exc.value)
    assert "test_reference_import.Sneaky" in message and "never unpickles" in message
    assert "\n" not in message and SNEAKY_CALLS == []


@pytest.mark.slow
def test_numpy1_files_namespace_configs_and_default_heads(tmp_path):
    """Files written under numpy 1 name numpy.core.multiarray.scalar; a Namespace config is
    a harmless attribute bag; without heads in the config, the paper's value is used."""
    config = argparse.Namespace(**{k: v for k, v in CONFIG.items() if "heads" not in k})
    ref = save_reference(tmp_path / "old.pth", reference_state(3), config)
    legacy = save_reference(tmp_path / "legacy.pth", reference_state(3), config, legacy=True)
    data = legacy.read_bytes()
    assert data.count(b"numpy._core.multiarray\nscalar") == 1
    legacy.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    result = import_reference(legacy, save_vocab(tmp_path / "vocab.csv"))
    assert result.checkpoint.model_config.heads == 4
    assert result.checkpoint.metrics["best_val_f1"] == pytest.approx(0.7321)
    assert "the paper's value for d_model 128" in result.notes[0]
    explicit = import_reference(ref, tmp_path / "vocab.csv", heads=8)
    assert explicit.checkpoint.model_config.heads == 8 and explicit.notes == []


def reference_shapes(d_model, vocab, t_blocks, i_blocks, heads, d_ff, backbone):
    """The reference model's state dict, on the meta device, built from its module types."""
    with torch.device("meta"):
        trunk = getattr(torchvision.models, backbone)()
        parts = {
            "tag_embedder.embed": nn.Embedding(vocab + 1, d_model),
            "tag_linear": nn.Linear(d_model, 1),
            "img_feature_extractor.backbone": nn.Sequential(*list(trunk.children())[:-2]),
            "img_feature_extractor.conv_1x1": nn.Conv2d(trunk.fc.in_features, d_model, 1),
            "img_feature_extractor.bn": nn.BatchNorm2d(d_model),
            **{f"tag_to_img.attn.{p}": nn.Linear(d_model, d_model) for p in
               ("q_linear", "v_linear", "k_linear", "out")},
            "img_linear": nn.Linear(d_model, 1),
            "gating.linear_1": nn.Linear(2 * d_model, d_ff),
            "gating.linear_2": nn.Linear(d_ff, 1),
        }  # fmt: skip
        for name, blocks in (("tag_encoder", t_blocks), ("img_encoder", i_blocks)):
            layer = nn.TransformerEncoderLayer(d_model, heads, d_ff)
            parts[name] = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
    return {f"{p}.{k}": v for p, m in parts.items() for k, v in m.state_dict().items()}


def test_reference_shapes_match_the_listing():
    built = reference_shapes(128, 81, 2, 1, 4, 512, "resnet18")
    assert {k: list(v.shape) for k, v in built.items()} == {
        k: shape for k, (shape, _) in listing().items()
    }


def test_the_large_scale_resnet50_config_maps_completely():
    """Paper's large-scale setting: ResNet-50, d_model 512, 6 + 2 layers, heads 8, d_ff 2048."""
    state = reference_shapes(512, 1000, 6, 2, 8, 2048, "resnet50")
    config, notes = infer_config(state, {})
    assert (config.backbone, config.d_model, config.heads, config.vocab_size) == (
        "resnet50", 512, 8, 1000,
    )  # fmt: skip
    assert (config.tag_layers, config.image_layers, config.d_ff, config.gate_d_ff) == (
        6, 2, 2048, 2048,
    )  # fmt: skip
    assert "paper's value" in notes[0]
    with torch.device("meta"):
        target = build_model(config).state_dict()
    converted = convert_state(state, target)
    assert converted.keys() == target.keys()
    assert all(converted[k].shape == target[k].shape for k in target)


@pytest.mark.slow
def test_an_imported_checkpoint_is_served_and_exported(imported, tmp_path):
    """The issue's round trip: the service answers with it, and it exports (float32 parity)."""
    import base64

    import onnxruntime as ort
    from fastapi.testclient import TestClient

    from magneto.infer.export import export_model
    from magneto.service.app import create_app
    from magneto.service.settings import ServiceSettings

    path = save_checkpoint(imported[3].checkpoint, tmp_path / "imported.ckpt")
    image = write_jpeg(tmp_path / "photo.jpg", (160, 120)).read_bytes()
    settings = ServiceSettings(checkpoint=path, device="cpu", runtime="float32")
    with TestClient(create_app(settings)) as client:
        body = {"image_base64": base64.b64encode(image).decode(), "tags": ["tag03", "tag10"]}
        answer = client.post("/v1/summarize", json=body)
    assert answer.status_code == 200, answer.text
    served = [t["score"] for t in answer.json()["tags"]]
    alone = Predictor.from_checkpoint(path, device="cpu", runtime="float32").predict(
        image, body["tags"]
    )
    assert served == pytest.approx([t.score for t in alone.tags], abs=1e-6)

    result = export_model(path, "onnx", tmp_path / "imported.onnx")
    session = ort.InferenceSession(str(result.model_file), providers=["CPUExecutionProvider"])
    model = Predictor.from_checkpoint(path, device="cpu", runtime="float32")
    prepared = model.prepare(PredictRequest(image, body["tags"]))
    feeds = {
        "images": prepared.image[None].numpy(),
        "tags": np.asarray([prepared.known], dtype=np.int64),
        "padding_mask": np.zeros((1, 2), dtype=bool),
    }
    final = session.run(["final"], feeds)[0][0]
    assert final.tolist() == pytest.approx([t.score for t in alone.tags], abs=1e-5)
