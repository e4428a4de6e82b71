"""Where a tag looks: on the image-only synthetic data, whose generator records the box each
concept was drawn in, a trained model's most-attended region for a kept tag lies in that
tag's box far more often than chance."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from magneto.config import RunConfig, load_config
from magneto.configs import config_path
from magneto.sources.nuswide import prepare_nuswide
from magneto.sources.synthetic.generator import SynthConfig, generate
from magneto.training import run_training

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from attention_localisation import localisation

pytestmark = pytest.mark.slow  # trains a model (about 20 s)


def test_the_most_attended_region_of_a_kept_tag_is_where_its_concept_is(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "prepared"
    generate(SynthConfig(items=800, unlabeled=0, seed=5, image_size=112, defects=False), raw)
    prepare_nuswide(raw, data)
    overrides = {"data": str(data), "images": str(raw / "Flickr"), "out": str(tmp_path / "run")}
    overrides |= {"epochs": 12, "progress": False, "tad_add": 0.0, "tad_drop": 0.0}
    run_training(load_config(RunConfig, config_path("synthetic"), overrides))
    figures = localisation(tmp_path / "run" / "best_f1.ckpt", data, raw)
    assert figures["grid"] == [4, 4] and figures["tags"] > 300
    assert 0.2 < figures["chance"] < 0.3  # a concept fills most of one quadrant of the grid
    assert figures["rate"] > 3 * figures["chance"], figures
