"""``from magneto import ...``: the names a Python user needs, documented, lazily imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

import magneto
from magneto.config import RunConfig
from magneto.infer.checkpoint import load_checkpoint
from magneto.infer.predictor import Predictor
from magneto.model.architectures import build_model


def test_the_documented_names_are_the_defining_objects():
    from magneto import Predictor as P
    from magneto import RunConfig as R
    from magneto import build_model as b
    from magneto import load_checkpoint as load

    assert (P, R, b, load) == (Predictor, RunConfig, build_model, load_checkpoint)


@pytest.mark.parametrize("name", [n for n in magneto.__all__ if n != "__version__"])
def test_every_exported_name_resolves_and_is_documented(name):
    value = getattr(magneto, name)
    assert value.__module__.startswith("magneto."), name
    assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert name in dir(magneto)


def test_all_lists_exactly_the_exported_names():
    assert set(magneto.__all__) == {"__version__", *magneto._EXPORTS}


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        magneto.Predicter  # noqa: B018


def test_importing_the_package_does_not_import_torch():
    code = "import sys, magneto, magneto.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_public_face_builds_a_model_from_a_run_config():
    from magneto import ModelConfig, RunConfig, build_model

    config = RunConfig(model=ModelConfig(architecture="tf-t", d_model=16, heads=2, d_ff=32))
    model = build_model(config.model.model_copy(update={"vocab_size": 5}))
    assert model.tag_embedder.embedding.num_embeddings == 6  # + padding
