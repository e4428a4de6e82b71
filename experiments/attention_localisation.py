"""Does a tag look where its concept is? The image stream's attention on the image-only
synthetic data, where the generator knows the box each concept was drawn in.

Generates the data (``magneto synth``, ``magneto prepare nuswide``), trains MAGNeto with
``configs/synthetic.yaml`` (or takes ``--checkpoint``), then, on the validation items, takes
every kept tag whose concept is drawn in the picture and asks whether the grid cell with the
highest attention has its centre inside that concept's box. Chance is the share of grid cells
whose centre is inside the box (what a cell picked at random would score). Prints both, and
with ``--screenshot FILE`` saves the page at / with that tag's overlay (Playwright, Debian's
Chromium). Usage:
    python experiments/attention_localisation.py [--items 2000] [--workdir runs/attention]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def magneto(*args: str) -> None:
    cmd = [sys.executable, "-m", "magneto.cli.main", *args]
    print("$ magneto " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def cell_centres(rows: int, columns: int, size: int) -> list[tuple[float, float]]:
    """Each grid cell's centre in the picture's pixels (square images: the crop is all)."""
    return [
        ((c + 0.5) * size / columns, (r + 0.5) * size / rows)
        for r in range(rows)
        for c in range(columns)
    ]


def inside(point: tuple[float, float], box: list[int]) -> bool:
    x, y = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def localisation(checkpoint: Path, data: Path, raw: Path) -> dict[str, float]:
    from magneto.data.annotation_files import read_annotations
    from magneto.errors import ImageError
    from magneto.infer.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    boxes = {
        r["item_id"]: r for r in map(json.loads, (raw / "boxes.jsonl").read_text().splitlines())
    }
    hits = total = 0
    chance = 0.0
    for record in read_annotations(data / "val.csv"):
        layout = boxes.get(record.item_id)
        if layout is None:
            continue
        try:
            prediction = predictor.predict(
                raw / "Flickr" / record.image_path, list(record.tags), explain=True
            )
        except ImageError:  # the data's planted broken JPEGs
            continue
        rows, columns = prediction.grid or (0, 0)
        centres = cell_centres(rows, columns, layout["size"])
        for tag in prediction.tags:
            box = layout["boxes"].get(tag.tag)
            if not tag.kept or box is None or tag.attention is None:
                continue
            weights = [w for row in tag.attention for w in row]
            best = max(range(len(weights)), key=weights.__getitem__)
            hits += inside(centres[best], box)
            chance += sum(inside(c, box) for c in centres) / len(centres)
            total += 1
    return {"tags": total, "rate": hits / total, "chance": chance / total, "grid": [rows, columns]}


def screenshot(checkpoint: Path, data: Path, raw: Path, path: Path) -> None:
    """The page with the overlay of a kept tag, for the docs."""
    sys.path.insert(0, str(REPO))
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from magneto.data.annotation_files import read_annotations
    from tests.service.conftest import start_server, stop_server
    from tests.service.test_page import ARGS, CHROMIUM

    def decodes(path: Path) -> bool:
        try:
            with Image.open(path) as image:
                image.load()
        except OSError:  # the data's planted truncated JPEGs
            return False
        return True

    records = read_annotations(data / "val.csv")
    record = next(r for r in records if len(r.tags) >= 4 and decodes(raw / "Flickr" / r.image_path))
    proc, url = start_server(checkpoint)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url + "/")
            page.set_input_files("#image", str(raw / "Flickr" / record.image_path))
            page.fill("#tags", ", ".join([*record.tags, "unicorn"]))
            page.fill("#top-k", "2")
            page.click("#submit")
            page.wait_for_selector("#results:not([hidden])", timeout=60_000)
            page.locator("#results tbody tr.kept.explainable td.tag").first.click()
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
            browser.close()
    finally:
        stop_server(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/attention"))
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--checkpoint", type=Path, help="default: train one on the data")
    parser.add_argument("--screenshot", type=Path, help="save the page with an overlay here")
    args = parser.parse_args()
    work = args.workdir.resolve()
    raw, data = work / "raw", work / "prepared"
    if not (raw / "boxes.jsonl").is_file():
        magneto("synth", "--out", str(raw), "--items", str(args.items), "--overwrite")
        magneto("prepare", "nuswide", "--root", str(raw), "--out", str(data), "--overwrite")
    checkpoint = args.checkpoint or work / "run" / "best_f1.ckpt"
    if not checkpoint.is_file():
        images, run = str(raw / "Flickr"), str(work / "run")
        config = "configs/synthetic.yaml"
        magneto("train", "--config", config, "--data", str(data), "--images", images, "--out", run)
    figures = localisation(checkpoint, data, raw)
    print(json.dumps(figures))
    print(
        f"the most-attended cell of a kept, drawn tag lies in its concept's box for "
        f"{100 * figures['rate']:.1f} % of {figures['tags']} tags (chance "
        f"{100 * figures['chance']:.1f} %, a {figures['grid'][0]}x{figures['grid'][1]} grid)"
    )
    if args.screenshot:
        screenshot(checkpoint, data, raw, args.screenshot)
        print(f"page with an overlay: {args.screenshot}")


if __name__ == "__main__":
    main()
