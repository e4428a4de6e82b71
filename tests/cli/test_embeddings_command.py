"""``magneto embeddings train``: writes vectors, reports coverage, keeps gensim quiet."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from magneto.cli.main import main
from magneto.config import RunConfig
from magneto.data.vocabulary import Vocabulary
from magneto.embeddings.initialise import init_embeddings
from magneto.embeddings.vector_files import load_vectors, tag_token
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig

TAGS = ["sky", "sun", "Clouds", "dog", "cat", "New York"]
ABSENT = [f"absent{i:02d}" for i in range(22)]


@pytest.fixture(autouse=True)
def restore_gensim_logging():
    level = logging.getLogger("gensim").level
    yield
    logging.getLogger("gensim").setLevel(level)


@pytest.fixture
def data(tmp_path):
    """A prepared-like directory: labelled train.csv, unlabeled.csv and vocab.csv (with
    22 tags that no item carries)."""
    root = tmp_path / "data"
    root.mkdir()
    train = ["item_id,tags,important_tags"]
    unlabeled = ["item_id,tags"]
    for i in range(40):
        group = TAGS[:3] if i % 2 else TAGS[3:]
        train.append(f'{i},"{",".join(group)}",{group[0]}')
        unlabeled.append(f'u{i},"{",".join(reversed(group))}"')
    (root / "train.csv").write_text("\n".join(train) + "\n")
    (root / "unlabeled.csv").write_text("\n".join(unlabeled) + "\n")
    vocab = ["index,word"] + [f"{i},{w}" for i, w in enumerate(TAGS + ABSENT)]
    (root / "vocab.csv").write_text("\n".join(vocab) + "\n")
    return root


def train_argv(data, out, *extra: str) -> list[str]:
    files = [str(data / "train.csv"), str(data / "unlabeled.csv")]
    return ["embeddings", "train", "--data", *files, "--out", str(out), "--epochs", "2", *extra]


def test_writes_vectors_and_reports_coverage_with_the_missing_tags(data, tmp_path, capsys):
    out = tmp_path / "vectors" / "tags.bin"
    assert main(train_argv(data, out, "--vector-size", "8")) == 0
    text = capsys.readouterr().out
    assert "wrote 6 tag vectors of size 8 (word2vec binary)" in text
    assert "on 80 items, window 3" in text
    assert "6 of 28 vocabulary tags have vectors (21.4 %)" in text
    assert f"missing: {', '.join(ABSENT[:20])} (and 2 more)" in text
    assert "absent20" not in text
    vectors = load_vectors(out)
    assert sorted(vectors.index_to_key) == sorted(tag_token(t) for t in TAGS)
    assert vectors.vector_size == 8


def test_refuses_to_overwrite_without_overwrite(data, tmp_path, capsys):
    out = tmp_path / "tags.txt"
    out.write_text("mine\n")
    assert main(train_argv(data, out)) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"magneto embeddings train: error: {out} exists; pass --overwrite to replace it"
    assert out.read_text() == "mine\n"
    assert main(train_argv(data, out, "--overwrite", "--vector-size", "4")) == 0
    assert out.read_text().startswith("6 4\n")  # word2vec text, header "COUNT DIM"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--out", "v.kv"], "native .kv format is a pickle"),
        (["--out", "v.npy"], "must end in .bin"),
        (["--vector-size", "0"], "--vector-size: '0' must be at least 1"),
        (["--window", "x"], "--window: 'x' is not an integer"),
    ],
)
def test_bad_flags_are_usage_errors(data, tmp_path, extra, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(train_argv(data, tmp_path / "v.bin", *extra))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_a_missing_vocabulary_is_a_runtime_error(data, tmp_path, capsys):
    argv = train_argv(data, tmp_path / "v.bin", "--vocab", str(tmp_path / "none.csv"))
    assert main(argv) == 1
    assert "vocabulary file not found" in capsys.readouterr().err
    assert not (tmp_path / "v.bin").exists()


def test_written_vectors_initialise_the_tag_embedder_through_embeddings(data, tmp_path):
    out = tmp_path / "tags.vec"
    assert (
        main(train_argv(data, out, "--vector-size", "16", "--vocab", str(data / "vocab.csv"))) == 0
    )
    vocabulary = Vocabulary.load(data / "vocab.csv")
    model_config = ModelConfig(
        architecture="tf-t", d_model=16, heads=2, d_ff=32, vocab_size=len(vocabulary)
    )
    config = RunConfig(model=model_config, embeddings=str(out))
    model = build_model(config.model)
    embedder = model.tag_embedder.embedding
    absent_row = embedder.weight[vocabulary.index("absent00")].detach().clone()
    assert init_embeddings(model, config.embeddings, vocabulary) == len(TAGS)
    vectors = load_vectors(out)
    for tag in ("sky", "Clouds", "New York"):
        row = embedder.weight[vocabulary.index(tag)]
        assert torch.equal(row, torch.tensor(vectors[tag_token(tag)]))
    assert torch.equal(embedder.weight[vocabulary.index("absent00")], absent_row)


def test_gensim_narration_only_with_verbose(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert main(train_argv(data, tmp_path / "quiet.bin")) == 0
    assert not [r for r in caplog.records if r.name.startswith("gensim")]
    assert main(["-v", *train_argv(data, tmp_path / "loud.bin")]) == 0
    assert [r for r in caplog.records if r.name.startswith("gensim")]


@pytest.mark.slow
def test_command_output_has_no_gensim_lines(data, tmp_path):
    """The real process, with main's own logging set-up (pytest's would hide it)."""
    argv = train_argv(data, tmp_path / "v.bin")
    done = subprocess.run(
        [sys.executable, "-m", "magneto.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "vocabulary tags have vectors" in done.stdout
    for gensim_says in ("lifecycle", "collecting all words", "EPOCH", "training model with"):
        assert gensim_says not in output
    assert "magneto: " not in done.stderr  # nothing logged at all
