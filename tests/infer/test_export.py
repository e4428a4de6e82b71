"""Exported models (ONNX under onnxruntime, TorchScript) against the eager model, the sidecar,
the ``magneto export`` command and the Triton example configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import magneto.devices as devices
from magneto.cli.main import main
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import Checkpoint, save_checkpoint
from magneto.infer.export import PaddedModel, export_model
from magneto.infer.runtimes import Calibration
from magneto.model.architectures import TagModel, build_model
from magneto.model.config import ModelConfig

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

VOCAB = 30
SIZE = 64
ARCHITECTURES = ("magneto", "ff", "tf-t", "tf-it")
TRITON = Path(__file__).resolve().parents[2] / "examples" / "triton" / "magneto" / "config.pbtxt"


def small_model(
    architecture: str, seed: int = 0, gating: bool = True, tag_bias: bool = False
) -> TagModel:
    """Random weights; BatchNorm statistics made non-trivial so eval-mode BN matters."""
    torch.manual_seed(seed)
    config = ModelConfig(
        architecture=architecture, vocab_size=VOCAB, d_model=32, heads=2, d_ff=64,
        tag_layers=1, image_layers=1, gating=gating, tag_bias=tag_bias,
    )  # fmt: skip
    model = build_model(config)
    if model.tag_bias is not None:
        model.tag_bias.start_from(torch.linspace(0.02, 0.98, VOCAB))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def write_checkpoint(model: TagModel, path: Path, input_size: int = SIZE) -> Path:
    words = [f"tag{i}" for i in range(VOCAB)]
    checkpoint = Checkpoint(
        model.config, Vocabulary(words), model.state_dict(), input_size=input_size, threshold=0.4
    )
    return save_checkpoint(checkpoint, path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per (architecture, format): the eager model, the export result, a runner of the file."""
    root = tmp_path_factory.mktemp("export")
    cache: dict[tuple[str, str], tuple] = {}

    def get(architecture: str, fmt: str):
        if (architecture, fmt) not in cache:
            model = small_model(architecture)
            ckpt = write_checkpoint(model, root / f"{architecture}.ckpt")
            result = export_model(ckpt, fmt, root / f"{architecture}.{fmt}")
            cache[architecture, fmt] = (model, result, runner(result))
        return cache[architecture, fmt]

    return get


def runner(result):
    """Callable on a dict of named tensors -> dict of named numpy outputs."""
    in_names = [spec["name"] for spec in result.metadata["inputs"]]
    out_names = [spec["name"] for spec in result.metadata["outputs"]]
    if result.metadata["format"] == "onnx":
        session = ort.InferenceSession(str(result.model_file), providers=["CPUExecutionProvider"])

        def run(inputs):
            arrays = session.run(out_names, {n: inputs[n].numpy() for n in in_names})
            return dict(zip(out_names, arrays, strict=True))

        return run
    module = torch.jit.load(str(result.model_file))

    def run(inputs):
        with torch.no_grad():
            outputs = module(*(inputs[n] for n in in_names))
        return {n: o.numpy() for n, o in zip(out_names, outputs, strict=True)}

    return run


def ragged_inputs(lengths: list[int], width: int, seed: int) -> dict[str, torch.Tensor]:
    """Random items padded to ``width``; garbage (even out-of-vocabulary ids) at padding."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    padding_mask = torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]
    tags = torch.randint(0, VOCAB, (batch, width), generator=gen)
    tags = tags.masked_fill(padding_mask, 10**6)
    images = torch.randn(batch, 3, SIZE, SIZE, generator=gen)
    return {"images": images, "tags": tags, "padding_mask": padding_mask}


def eager(model: TagModel, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    tags = inputs["tags"].masked_fill(inputs["padding_mask"], VOCAB)  # eager needs valid ids
    with torch.no_grad():
        out = model(inputs["images"], tags, inputs["padding_mask"])
    return {k: v.numpy() for k, v in out._asdict().items() if v is not None}


# Batch sizes and tag lengths all differ from the (2, 3) the export traced with.
SHAPES = [[1], [5, 1, 7, 3], [4, 9, 2], [6, 6, 0]]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.slow
def test_exported_model_matches_eager(exported, architecture, fmt):
    model, result, run = exported(architecture, fmt)
    names = [spec["name"] for spec in result.metadata["outputs"]]
    for seed, lengths in enumerate(SHAPES):
        inputs = ragged_inputs(lengths, max(lengths) + 1, seed)
        got, want = run(inputs), eager(model, inputs)
        real = ~inputs["padding_mask"].numpy()
        assert set(got) == set(names) and set(names) <= set(want)
        for name in names:
            assert got[name].shape == real.shape and got[name].dtype == np.float32
            assert np.abs(got[name] - want[name])[real].max(initial=0.0) <= 1e-5, name
            assert not got[name][~real].any(), name  # padded positions are 0, as in eager


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_does_not_change_real_positions(exported, architecture, fmt):
    _, _, run = exported(architecture, fmt)
    short = ragged_inputs([4, 2], 4, seed=7)
    long = ragged_inputs([4, 2], 11, seed=8)  # other garbage at the padding
    long["images"], long["tags"][:, :4] = short["images"], short["tags"]
    a, b = run(short), run(long)
    real = ~short["padding_mask"].numpy()
    for name in a:
        assert np.abs(a[name][real] - b[name][:, :4][real]).max() <= 1e-6, name


@pytest.mark.parametrize("gating", [True, False])
def test_padded_wrapper_matches_eager_without_exporting(gating):
    model = small_model("magneto", seed=3, gating=gating)
    inputs = ragged_inputs([3, 8, 1, 0], 9, seed=2)
    wrapper = PaddedModel(model)
    got = wrapper(inputs["images"], inputs["tags"], inputs["padding_mask"])
    want = eager(model, inputs)
    assert wrapper.output_names == ["final", "tag", "image", "alpha"][: 4 if gating else 3]
    for name, tensor in zip(wrapper.output_names, got, strict=True):
        assert torch.allclose(tensor, torch.from_numpy(want[name]), atol=1e-6), name


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padded_wrapper_keeps_the_tag_bias(architecture):
    model = small_model(architecture, seed=4, tag_bias=True)
    inputs = ragged_inputs([3, 8, 1, 0], 9, seed=5)
    wrapper = PaddedModel(model)
    images = [inputs["images"]] if model.uses_images else []
    got = wrapper(*images, inputs["tags"], inputs["padding_mask"])
    want = eager(model, inputs)
    for name, tensor in zip(wrapper.output_names, got, strict=True):
        assert torch.allclose(tensor, torch.from_numpy(want[name]), atol=1e-6), name


def test_onnx_export_keeps_the_tag_bias(tmp_path):
    model = small_model("ff", seed=6, tag_bias=True)
    ckpt = write_checkpoint(model, tmp_path / "ff-bias.ckpt")
    run = runner(export_model(ckpt, "onnx", tmp_path / "ff-bias.onnx"))
    inputs = ragged_inputs([5, 2, 7], 8, seed=9)
    got, want = run(inputs), eager(model, inputs)
    real = ~inputs["padding_mask"].numpy()
    assert np.abs(got["final"] - want["final"])[real].max() <= 1e-5
    unbiased = small_model("ff", seed=6)  # same weights, no bias: the bias is in the graph
    assert np.abs(got["final"] - eager(unbiased, inputs)["final"])[real].max() > 0.05


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_sidecar_describes_the_onnx_graph(exported, architecture):
    model, result, _ = exported(architecture, "onnx")
    meta = json.loads(result.sidecar_file.read_text())
    assert result.sidecar_file.name == f"{architecture}.onnx.json"
    assert meta["architecture"] == architecture and meta["threshold"] == pytest.approx(0.4)
    assert meta["vocabulary"]["words"][3] == "tag3" and meta["vocabulary"]["padding_index"] == 30
    proto = onnx.load(str(result.model_file))
    onnx.checker.check_model(proto)
    graph = proto.graph
    # The padded layout has no data-dependent shapes (the eager Packing's NonZero would be).
    assert not {"NonZero", "Loop", "If"} & {node.op_type for node in graph.node}
    for specs, values in ((meta["inputs"], graph.input), (meta["outputs"], graph.output)):
        assert [s["name"] for s in specs] == [v.name for v in values]
        for spec, value in zip(specs, values, strict=True):
            assert onnx_signature(value)[0] == spec["dtype"]
            assert onnx_signature(value)[1] == [
                d if isinstance(d, int) else -1 for d in spec["shape"]
            ]
    if model.uses_images:
        assert meta["image"]["input_size"] == SIZE and meta["image"]["mean"][0] == 0.485
        assert meta["inputs"][0]["shape"] == ["batch", 3, SIZE, SIZE]
    else:
        assert meta["image"] is None and meta["inputs"][0]["name"] == "tags"


def test_torchscript_file_carries_the_sidecar(exported):
    _, result, _ = exported("tf-t", "torchscript")
    extra = {"magneto.json": ""}
    torch.jit.load(str(result.model_file), _extra_files=extra)
    assert json.loads(extra["magneto.json"]) == json.loads(result.sidecar_file.read_text())


ONNX_TYPES = {1: "float32", 7: "int64", 9: "bool"}


def onnx_signature(value) -> tuple[str, list[int]]:
    """dtype name and dims (-1 for a dynamic one) of an ONNX graph input/output."""
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return ONNX_TYPES[tensor.elem_type], dims


# -- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(small_model("tf-t"), tmp_path_factory.mktemp("cli") / "c.ckpt")


def test_cli_exports_and_describes(checkpoint, tmp_path, capsys):
    out = tmp_path / "m" / "model.onnx"
    assert (
        main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert str(out) in text and "tags int64" in text and "threshold 0.4" in text
    assert out.is_file() and (tmp_path / "m" / "model.onnx.json").is_file()
    args = ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--json"]
    assert main([*args, "--out", str(tmp_path / "model.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "torchscript"


def test_cli_errors_are_one_line(checkpoint, tmp_path, capsys):
    def fails(*argv: str) -> str:
        assert main(["export", *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("magneto export: error:") and "\n" not in err
        return err

    out = tmp_path / "model.onnx"
    assert "checkpoint not found" in fails(
        "--checkpoint", str(tmp_path / "none.ckpt"), "--format", "onnx", "--out", str(out)
    )
    out.write_text("keep me")
    assert "exists" in fails("--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out))
    assert out.read_text() == "keep me" and not (tmp_path / "model.onnx.json").exists()
    with pytest.raises(SystemExit) as exc:
        main(["export", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert exc.value.code == 2 and "--format" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a bad flag value is a usage error too
        main(["export", "--checkpoint", str(checkpoint), "--format", "tflite", "--out", str(out)])
    assert exc.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


# -- the exporter, int8 ---------------------------------------------------------------------------
def test_onnx_goes_through_the_dynamo_exporter_and_tracing_warns(tmp_path, monkeypatch):
    ckpt = write_checkpoint(small_model("tf-t"), tmp_path / "m.ckpt")
    calls = []
    original = torch.onnx.export

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dynamo"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    export_model(ckpt, "onnx", tmp_path / "m.onnx")
    assert calls == [True]
    with pytest.warns(FutureWarning, match="torch.jit"):  # deprecated upstream: not hidden
        export_model(ckpt, "torchscript", tmp_path / "m.pt")


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, tiny_data):
    data, images = tiny_data
    root = tmp_path_factory.mktemp("int8")
    model = small_model("magneto")
    ckpt = write_checkpoint(model, root / "m.ckpt")
    calibration = Calibration(data / "train.csv", images, items=32)
    plain = export_model(ckpt, "onnx", root / "plain.onnx")
    int8 = export_model(ckpt, "onnx", root / "int8.onnx", quantize="int8", calibration=calibration)
    return plain, int8


@pytest.mark.slow
def test_int8_export_quantizes_the_image_trunk_only(int8_export, tiny_data):
    plain, int8 = int8_export
    quantization = int8.metadata["quantization"]
    assert quantization["type"] == "int8" and quantization["calibration"]["items"] > 0
    assert json.loads(int8.sidecar_file.read_text())["quantization"] == quantization
    assert int8.model_file.stat().st_size < plain.model_file.stat().st_size / 2
    graph = onnx.load(str(int8.model_file)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    readers = {n.op_type for n in graph.node if dequantized.intersection(n.input)}
    assert "Conv" in readers and not readers & {"MatMul", "Gemm", "Softmax"}  # tags: float32
    _, images = tiny_data
    inputs = ragged_inputs([5, 1, 7, 3], 7, seed=3)
    photos = Calibration(images, items=4)  # real images, decoded as inference does
    inputs["images"] = torch.from_numpy(next(photos.batches(SIZE, batch_size=4)))
    expected, got = runner(plain)(inputs), runner(int8)(inputs)
    real_positions = ~inputs["padding_mask"].numpy()
    difference = np.abs(got["final"] - expected["final"])[real_positions]
    assert 0 < difference.max() < 0.05


def test_int8_export_refusals_are_one_line(checkpoint, tmp_path, tiny_data, capsys, monkeypatch):
    data, images = tiny_data
    image_ckpt = write_checkpoint(small_model("magneto"), tmp_path / "img.ckpt")
    out = str(tmp_path / "m.onnx")
    calibration = ["--calibration", str(data / "train.csv"), "--calibration-images", str(images)]

    def fails(ckpt, *argv: str) -> str:
        base = ["export", "--checkpoint", str(ckpt), "--out", out, "--quantize", "int8"]
        assert main([*base, *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("magneto export: error:") and "\n" not in err
        return err

    assert "pass --format onnx" in fails(image_ckpt, "--format", "torchscript", *calibration)
    assert "needs --calibration" in fails(image_ckpt, "--format", "onnx")
    assert "reads no images" in fails(checkpoint, "--format", "onnx", *calibration)
    monkeypatch.setattr(devices, "cpu_has_int8_dot", lambda: False)
    assert "no int8 dot-product" in fails(image_ckpt, "--format", "onnx", *calibration)
    assert not (tmp_path / "m.onnx").exists()


# -- the Triton example -------------------------------------------------------------------------
def read_pbtxt(text: str) -> dict:
    """The parts of a Triton config.pbtxt the test needs (a small reader, no tritonclient)."""
    text = re.sub(r"#[^\n]*", "", text)
    config = {
        "platform": re.search(r'platform:\s*"([^"]+)"', text).group(1),
        "max_batch_size": int(re.search(r"max_batch_size:\s*(\d+)", text).group(1)),
        "dynamic_batching": re.search(r"\bdynamic_batching\s*\{", text) is not None,
    }
    entry = re.compile(r'\{\s*name:\s*"(\w+)"\s*data_type:\s*(\w+)\s*dims:\s*\[([^\]]*)\]\s*\}')
    for kind in ("input", "output"):
        block = re.search(rf"\b{kind}\s*\[(.*?)\n\]", text, re.S).group(1)
        config[kind] = [
            (name, dtype, [int(d) for d in dims.replace(",", " ").split()])
            for name, dtype, dims in entry.findall(block)
        ]
    return config


TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}


@pytest.mark.slow
def test_triton_config_matches_the_exported_onnx(tmp_path):
    ckpt = write_checkpoint(small_model("magneto"), tmp_path / "m.ckpt", input_size=112)
    result = export_model(ckpt, "onnx", tmp_path / "magneto" / "1" / "model.onnx")
    config = read_pbtxt(TRITON.read_text())
    assert config["platform"] == "onnxruntime_onnx" and config["dynamic_batching"]
    assert config["max_batch_size"] > 0  # so every dims leaves the batch dimension out
    graph = onnx.load(str(result.model_file)).graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        assert [c[0] for c in config[kind]] == [v.name for v in values], kind
        for (name, dtype, dims), value in zip(config[kind], values, strict=True):
            onnx_dtype, onnx_dims = onnx_signature(value)
            assert dtype == TRITON_TYPES[onnx_dtype], name
            assert onnx_dims[0] == -1 and dims == onnx_dims[1:], name
