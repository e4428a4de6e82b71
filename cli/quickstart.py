"""``magneto quickstart``: synth -> prepare -> pre-train -> train -> evaluate -> serve.

Everything on built-in synthetic data, with ``configs/synthetic.yaml``, in a work directory
that quickstart owns (marked by a file; a directory it did not create is never touched).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

from magneto.cli.common import int_at_least, port_number, positive_int
from magneto.config import ConfigError, RunConfig, load_config
from magneto.configs import config_path

MARKER = ".magneto-quickstart"


def register(subparsers: argparse._SubParsersAction) -> None:
    qs = subparsers.add_parser(
        "quickstart",
        help="the whole pipeline on built-in synthetic data",
        description="Generate synthetic data, prepare it, pre-train, train, evaluate, and "
        "serve the model (or show how to predict with it). No downloads.",
    )
    qs.add_argument(
        "--workdir",
        default="magneto-quickstart",
        metavar="DIR",
        help="directory for data and runs (re-running replaces its contents)",
    )
    qs.add_argument("--no-serve", action="store_true", help="stop after the evaluation")
    qs.add_argument(
        "--items",
        type=int_at_least(10),
        default=2000,
        metavar="N",
        help="labelled synthetic items (at least 10)",
    )
    qs.add_argument(
        "--epochs", type=positive_int, metavar="N", help="training epochs [default: the config's]"
    )
    qs.add_argument(
        "--pretrain-epochs",
        type=positive_int,
        metavar="N",
        help="pre-training epochs [default: the config's]",
    )
    qs.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the data and the runs"
    )
    qs.add_argument("--host", default="127.0.0.1", metavar="HOST", help="where to serve")
    qs.add_argument("--port", type=port_number, default=8000, metavar="N", help="where to serve")
    qs.set_defaults(handler=run_quickstart)


def _claim(workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).is_file():
            raise ConfigError(
                f"{workdir} exists and was not made by quickstart; choose another --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by magneto quickstart; re-running replaces this dir\n")


def _stage(name: str, started: float) -> None:
    print(f"\n== {name} ({time.perf_counter() - started:.0f}s since start)", flush=True)


def run_quickstart(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    workdir = Path(args.workdir)
    _claim(workdir)
    raw, prepared, runs = workdir / "raw", workdir / "prepared", workdir / "runs"

    _stage("1/5 synthetic NUS-WIDE", started)
    from magneto.data.annotation_files import read_annotations
    from magneto.sources.nuswide import prepare_nuswide
    from magneto.sources.synthetic.generator import SynthConfig, generate

    synth = generate(SynthConfig(items=args.items, unlabeled=args.items // 4, seed=args.seed), raw)
    print("\n".join(f"  {line}" for line in synth.lines()))

    _stage("2/5 prepare (paper preprocessing)", started)
    summary = prepare_nuswide(raw, prepared)
    print("\n".join(f"  {line}" for line in summary.lines()))

    overrides = {"data": str(prepared), "images": str(raw / "Flickr"), "seed": args.seed}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.pretrain_epochs:
        overrides["pretrain_epochs"] = args.pretrain_epochs
    base: RunConfig = load_config(RunConfig, config_path("synthetic"), overrides)

    _stage("3/5 outlier-detection pre-training", started)
    from magneto.pretraining import run_pretraining

    pre = run_pretraining(base.model_copy(update={"out": str(runs / "pretrain")}))
    print(f"  pre-training checkpoint: {pre.checkpoint}")

    _stage("4/5 supervised training (from the pre-training checkpoint)", started)
    from magneto.training import evaluate_checkpoint, run_training

    trained = run_training(
        base.model_copy(update={"out": str(runs / "train"), "init_from": str(pre.checkpoint)})
    )
    checkpoint = trained.fit.checkpoints["best_f1"]

    _stage("5/5 evaluation on the validation split (2 outlier tags added per item)", started)
    result = evaluate_checkpoint(
        checkpoint, prepared / "val.csv", raw / "Flickr", outliers=2, seed=args.seed, workers=0
    )
    print(result.table())
    print(f"\ncheckpoint: {checkpoint}")
    print(
        f"curves:     {trained.out / 'curves.png'}   (TensorBoard: {trained.out / 'tensorboard'})"
    )
    print(f"quickstart took {time.perf_counter() - started:.0f}s")

    bad = {item_id for item_id, _ in result.skipped}
    example = next(r for r in read_annotations(prepared / "val.csv") if r.item_id not in bad)
    image = raw / "Flickr" / example.image_path
    tags = ",".join(example.tags)
    predict = f"magneto predict --checkpoint {checkpoint} --image {image} --tags {tags}"
    if args.no_serve or importlib.util.find_spec("magneto.service") is None:
        print(f"\npredict with it:\n  {predict}")
        return 0
    print(f"\nserving {checkpoint} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    print(f"or from the command line:\n  {predict}", flush=True)
    sys.stderr.flush()
    # A fresh process: the service's model thread would otherwise share the CPU with the
    # OpenMP team training left behind here, which halves its speed; memory is freed too.
    command = ["serve", "--checkpoint", str(checkpoint), "--host", args.host]
    os.execv(
        sys.executable,
        [sys.executable, "-m", "magneto.cli.main", *command, "--port", str(args.port)],
    )
    return 0  # not reached
