"""``mkdocs build --strict`` (run by .ci/checks) fails on what would rot the site: a page left
out of the navigation, a link to a page or an anchor that does not exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.import_graph import ROOT

pytestmark = pytest.mark.slow  # builds the site in a subprocess


def build(tmp_path: Path, breakage: str | None) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    if breakage == "orphan page":
        (tmp_path / "docs" / "notes.md").write_text("# Notes\n\nNot in the navigation.\n")
    elif breakage == "broken link":
        with (tmp_path / "docs" / "index.md").open("a") as handle:
            handle.write("\nSee [the old page](no-such-page.md).\n")
    elif breakage == "broken anchor":
        with (tmp_path / "docs" / "index.md").open("a") as handle:
            handle.write("\nSee [its flags](reference/cli.md#magneto-no-such-command).\n")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )


def test_the_site_builds_with_its_generated_reference(tmp_path):
    result = build(tmp_path, None)
    assert result.returncode == 0, result.stderr[-3000:]
    # Only mkdocs' own INFO lines: no docs warning and no plugin banner (pinned away in
    # pyproject.toml), so that a warning a page causes is not lost among them.
    printed = (result.stdout + result.stderr).splitlines()
    noise = [line for line in printed if line.strip() and not line.startswith("INFO")]
    assert not noise, "\n".join(noise)
    site = tmp_path / "s"
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "magneto embeddings train" in cli and "--init-from" in cli
    assert "/v1/summarize/batch" in (site / "reference" / "http-api" / "index.html").read_text()
    assert "Predictor" in (site / "reference" / "python" / "index.html").read_text()


@pytest.mark.parametrize("breakage", ["orphan page", "broken link", "broken anchor"])
def test_a_strict_build_fails_on(tmp_path, breakage):
    result = build(tmp_path, breakage)
    assert result.returncode != 0
    assert {"orphan page": "notes.md", "broken link": "no-such-page.md"}.get(
        breakage, "magneto-no-such-command"
    ) in result.stderr
