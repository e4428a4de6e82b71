"""``magneto embeddings train``: Word2Vec tag vectors for ``--embeddings FILE``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from magneto.cli.common import non_negative_float, non_negative_int, positive_int
from magneto.errors import MagnetoError

MAX_MISSING_SHOWN = 20


def vectors_out(text: str) -> Path:
    """An argparse type: a file name whose suffix says the format to write."""
    from magneto.embeddings.vector_files import format_for_suffix

    try:
        format_for_suffix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "embeddings",
        help="word vectors for the tag embedder (--embeddings FILE)",
        description="Word vectors for the tag embedder, as a step of their own.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser(
        "train",
        help="train Word2Vec tag vectors on annotation files",
        description="Skip-gram Word2Vec (gensim) on the tag lists of annotation files (CSV or "
        "JSONL, labelled or not: train.csv, unlabeled.csv, ...): each item's tags are one "
        "sentence and the window spans the whole list. Writes word2vec binary (FILE.bin) or "
        "text (FILE.txt, FILE.vec) for `magneto train --embeddings FILE`, and reports how many "
        "vocabulary tags got a vector. Use --vector-size equal to the model's d_model to have "
        "the vectors copied as they are (otherwise they are projected).",
    )
    train.add_argument(
        "--data", required=True, nargs="+", type=Path, metavar="FILE", help="annotation files"
    )
    train.add_argument(
        "--out",
        required=True,
        type=vectors_out,
        metavar="FILE",
        help="vectors file: .bin (word2vec binary) or .txt/.vec (word2vec text)",
    )
    train.add_argument(
        "--vocab",
        type=Path,
        metavar="FILE",
        help="vocabulary (index,word) to report coverage against "
        "[default: vocab.csv beside the first --data file, if there]",
    )
    train.add_argument(
        "--vector-size", type=positive_int, metavar="N", default=128, help="vector length"
    )
    train.add_argument(
        "--epochs", type=positive_int, metavar="N", default=20, help="passes over the data"
    )
    train.add_argument(
        "--min-count",
        type=positive_int,
        default=1,
        metavar="N",
        help="ignore tags seen fewer times",
    )
    train.add_argument(
        "--window",
        type=positive_int,
        metavar="N",
        help="context window [default: the longest tag list, so it spans every whole list]",
    )
    train.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        default=1,
        help="training threads (more is faster; only 1 gives the same vectors run after run)",
    )
    train.add_argument(
        "--sample",
        type=non_negative_float,
        metavar="FLOAT",
        default=0.0,
        help="downsample tags more frequent than this share of all tags (gensim's sample; "
        "0: never, since frequent tags still matter)",
    )
    train.add_argument("--seed", type=non_negative_int, metavar="N", default=0, help="random seed")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.set_defaults(handler=run_train)


def _vocabulary_path(args: argparse.Namespace) -> Path | None:
    if args.vocab is not None:
        return args.vocab
    beside = args.data[0].parent / "vocab.csv"
    return beside if beside.is_file() else None


def run_train(args: argparse.Namespace) -> int:
    from magneto.data.vocabulary import Vocabulary
    from magneto.embeddings.vector_files import DESCRIPTIONS, save_vectors
    from magneto.embeddings.word_vectors import (
        TagSentences,
        Word2VecSettings,
        train_tag_vectors,
        vector_coverage,
    )

    out: Path = args.out
    if out.is_dir():
        raise MagnetoError(f"{out} is a directory; --out names the vectors file")
    if out.exists() and not args.overwrite:
        raise MagnetoError(f"{out} exists; pass --overwrite to replace it")
    vocab_path = _vocabulary_path(args)
    vocabulary = Vocabulary.load(vocab_path) if vocab_path is not None else None
    # gensim narrates every step at INFO; that is debug output here (`magneto -v`).
    verbose = getattr(args, "verbose", False)
    logging.getLogger("gensim").setLevel(logging.NOTSET if verbose else logging.ERROR)

    settings = Word2VecSettings(
        vector_size=args.vector_size,
        epochs=args.epochs,
        min_count=args.min_count,
        window=args.window,
        workers=args.workers,
        seed=args.seed,
        sample=args.sample,
    )
    trained = train_tag_vectors(TagSentences(args.data), settings, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = save_vectors(trained.vectors, out)
    print(
        f"wrote {len(trained.vectors)} tag vectors of size {settings.vector_size} "
        f"({DESCRIPTIONS[fmt]}) to {out}: skip-gram on {trained.items} items, "
        f"window {trained.window}, {settings.epochs} epochs"
    )
    if vocabulary is None:
        print("no vocabulary to check coverage against (pass --vocab vocab.csv)")
        return 0
    coverage = vector_coverage(trained.vectors, vocabulary)
    print(
        f"{coverage.found} of {coverage.total} vocabulary tags have vectors "
        f"({coverage.percent:.1f} %) [{vocab_path}]"
    )
    if coverage.missing:
        shown = ", ".join(coverage.missing[:MAX_MISSING_SHOWN])
        more = len(coverage.missing) - MAX_MISSING_SHOWN
        print(f"missing: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    return 0
