from __future__ import annotations

import pytest

from magneto.config import ConfigError, RunConfig, load_config, save_config
from magneto.configs import config_path


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.2\nmodel:\n  d_model: 64\n  heads: 8\nepochs: 3\n")
    config = load_config(RunConfig, path, {"epochs": "7", "model.heads": "4", "aux": False})
    assert config.lr == 0.2 and config.epochs == 7
    assert config.model.d_model == 64 and config.model.heads == 4
    assert config.model.d_ff == 512  # untouched default
    assert config.aux is False
    assert config.threshold == "auto"


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config(RunConfig, config_path("nuswide"), {"loss_params": '{"smooth": 2}'})
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(RunConfig, tmp_path / "saved.yaml") == config


@pytest.mark.parametrize("name", ["nuswide", "large-scale", "large-scale-cpu", "synthetic"])
def test_shipped_configs_are_valid(name):
    config = load_config(RunConfig, config_path(name))
    assert config.model.architecture == "magneto"
    config.check_cache()


def test_shipped_configs_hold_the_papers_hyper_parameters():
    nus = load_config(RunConfig, config_path("nuswide"))
    assert (nus.model.image_layers, nus.model.tag_layers, nus.model.d_model) == (1, 2, 128)
    assert (nus.model.heads, nus.model.d_ff, nus.model.dropout) == (4, 512, 0.3)
    assert (nus.max_len, nus.batch_size, nus.input_size, nus.lr) == (16, 32, 112, 0.01)
    assert (nus.momentum, nus.tad_add, nus.tad_drop) == (0.9, 0.5, 0.5)
    assert nus.model.backbone == "resnet18" and nus.model.freeze_backbone == "all"
    ls = load_config(RunConfig, config_path("large-scale"))
    assert (ls.model.image_layers, ls.model.tag_layers, ls.model.d_model) == (2, 6, 512)
    assert (ls.model.heads, ls.model.d_ff, ls.model.dropout) == (8, 2048, 0.1)
    assert (ls.max_len, ls.batch_size, ls.input_size, ls.lr) == (64, 256, 224, 0.03)
    assert ls.model.backbone == "resnet50" and ls.model.freeze_backbone == 3
    assert (ls.scheduler, ls.plateau_factor, ls.plateau_patience) == ("plateau", 0.1, 5)
    assert (ls.tad_add, ls.tad_drop) == (0.3, 0.3)


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_cpu_large_scale_config_differs_only_where_it_says_scaled():
    """The scaled-down copy must not drift from large-scale.yaml in any knob it does not own."""
    cpu_path = config_path("large-scale-cpu")
    marked = set()
    for line in cpu_path.read_text().splitlines():
        if line.endswith("# scaled"):
            key = line.split(":")[0]
            marked.add(("model." if key.startswith(" ") else "") + key.strip())
    paper = _flat(load_config(RunConfig, config_path("large-scale")).model_dump())
    cpu = _flat(load_config(RunConfig, cpu_path).model_dump())
    assert {key for key in paper if paper[key] != cpu[key]} == marked
    assert {"model.d_model", "epochs", "model.backbone"} <= marked


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": "fast"}, "invalid lr: Input should be a valid number"),
        ({"epochs": "0"}, "invalid epochs: Input should be greater than or equal to 1"),
        (
            {"model.freeze_backbone": "half"},
            "invalid model.freeze_backbone: Input should be 'all' or 'none'",
        ),
        ({"optimizer": "lion"}, "invalid optimizer: Input should be 'sgd' or 'adamw'"),
        ({"loss_params": "{oops"}, "invalid loss_params: Value error, not a JSON object"),
        ({"bogus": "1"}, "invalid bogus: Extra inputs are not permitted"),
        ({"threshold": "high"}, "invalid threshold"),
        ({"model.heads": "3"}, "d_model (128) must be divisible by heads (3)"),
    ],
)
def test_bad_values_give_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(RunConfig, tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: 0.1\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_config(RunConfig, broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(RunConfig, listy)
    extra = tmp_path / "extra.yaml"
    extra.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"extra\.yaml: invalid learning_rate"):
        load_config(RunConfig, extra)


def test_feature_cache_needs_a_frozen_backbone_and_no_augmentation():
    with pytest.raises(ConfigError, match="augment_images: false"):
        RunConfig(feature_cache=True, augment_images=True).check_cache()
    with pytest.raises(ConfigError, match="freeze_backbone: all"):
        load_config(
            RunConfig,
            None,
            {"feature_cache": True, "augment_images": False, "model.freeze_backbone": "3"},
        ).check_cache()
    RunConfig(feature_cache=True, augment_images=False).check_cache()


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"loss": "not-a-loss"}, ["loss", "bce_dice", "zlpr"]),
        ({"loss": "focal", "loss_params": '{"gama": 2}'}, ["focal", "gama", "gamma"]),
        ({"loss": "bce", "loss_params": '{"args": 1}'}, ["bce", "args"]),
        ({"aux_loss": "dice", "aux_loss_params": '{"smoth": 1}'}, ["dice", "smoth", "smooth"]),
        ({"aux_loss_params": '{"smooth": 2}'}, ["aux_loss_params needs aux_loss"]),
    ],
)
def test_loss_names_and_parameters_are_checked_when_the_config_is_built(overrides, fragments):
    with pytest.raises(ConfigError) as error:
        load_config(RunConfig, None, overrides)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_the_auxiliary_outputs_get_their_own_loss():
    import torch

    from magneto.model.architectures import ModelOutput
    from magneto.train.fit_setup import criterion
    from magneto.train.loss_registry import build_loss

    config = load_config(RunConfig, None, {"loss": "BCE", "aux_loss": "Dice"})
    assert config.losses() == (("bce", {}), ("dice", {}))
    same = load_config(RunConfig, None, {"loss": "focal", "loss_params": '{"gamma": 3}'})
    assert same.losses() == (("focal", {"gamma": 3}), ("focal", {"gamma": 3}))
    torch.manual_seed(0)
    logits = [torch.randn(2, 3) for _ in range(3)]
    probs = [torch.sigmoid(x) for x in logits]
    alpha = torch.full((2, 3), 0.5)
    output = ModelOutput(
        0.5 * (probs[1] + probs[2]), probs[1], probs[2], alpha, logits[1], logits[2]
    )
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[False, False, False], [False, False, True]])
    _, parts = criterion(config, aux=True)(output, targets, mask)
    dice = build_loss("dice")
    assert torch.allclose(parts["tag"], dice(probs[1], targets, mask, logits[1]))
    assert torch.allclose(parts["image"], dice(probs[2], targets, mask, logits[2]))
    bce = build_loss("bce")(output.final, targets, mask)
    assert torch.allclose(parts["final"], bce, atol=1e-4)


def test_embeddings_none_on_the_command_line_wins_over_a_config_asking_for_word2vec():
    """``--embeddings none`` (the learning curves' random-embedder arm) against
    configs/large-scale-cpu.yaml, which asks for word2vec."""
    from magneto.cli.config_flags import overrides_from
    from magneto.cli.main import build_parser

    path = config_path("large-scale-cpu")
    assert load_config(RunConfig, path).embeddings == "word2vec"
    args = build_parser().parse_args(["train", "--config", str(path), "--embeddings", "none"])
    assert load_config(RunConfig, path, overrides_from(args)).embeddings is None
