"""Post one validation image and its tags to a running container and check the answer.

Used by docker/smoke.sh with the host's Python (standard library only): the request is the
multipart form a curl user sends, and the answer must be the documented schema with every
given tag scored once and kept tags among them.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def multipart(image: Path, tags: list[str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{image.name}"'
        "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + image.read_bytes()
        + b"\r\n"
    ]
    for tag in tags:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="tags"\r\n\r\n{tag}\r\n'.encode()
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def ask(base_url: str, image: Path, tags: list[str]) -> tuple[int, dict]:
    body, content_type = multipart(image, tags)
    request = urllib.request.Request(
        f"{base_url}/v1/summarize", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def main(base_url: str, val_csv: str, images: str) -> int:
    """Ask about the first validation items; an item whose image file is one of the dataset's
    deliberate defects (a 400 ``invalid_image``) passes to the next, at most 5."""
    with open(val_csv, newline="") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), 5))
    for row in rows:
        tags = row["tags"].split(",")
        status, answer = ask(base_url, Path(images) / row["image"], tags)
        if status == 400 and answer.get("error", {}).get("code") == "invalid_image":
            print(f"[smoke] item {row['item_id']}: its image is a defect, trying the next")
            continue
        break
    if status != 200:
        print(f"[smoke] wrong answer: {status} {json.dumps(answer)[:500]}", file=sys.stderr)
        return 1
    scored = [t["tag"] for t in answer["tags"]]
    problems = []
    if sorted(scored) != sorted(tags):
        problems.append(f"scored {scored}, sent {tags}")
    if not set(answer["kept_tags"]) <= set(tags):
        problems.append(f"kept {answer['kept_tags']} not among {tags}")
    if not all(0.0 <= t["score"] <= 1.0 and 0.0 <= t["alpha"] <= 1.0 for t in answer["tags"]):
        problems.append("a score or alpha outside [0, 1]")
    shown = {
        "sent": tags,
        "important (ground truth)": row["important_tags"].split(","),
        "kept_tags": answer["kept_tags"],
        "scores": {t["tag"]: round(t["score"], 3) for t in answer["tags"]},
        "threshold": answer["threshold"],
        "model": answer["model"],
    }
    print(f"[smoke] answer: {json.dumps(shown)}")
    for problem in problems:
        print(f"[smoke] wrong answer: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
