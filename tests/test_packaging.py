"""What installing the project puts on ``sys.path``: one import name, ``magneto``, holding every
module of the repository's folders (``service/`` as ``magneto.service``, ...), its data files
and the console command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.import_graph import ROOT, modules, package_dirs

pytestmark = pytest.mark.slow  # builds the wheel in a subprocess


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("magneto_ets-*.whl")
    return found


def _project_files(pattern: str) -> list[Path]:
    """The repository's own files (tracked or not yet added), never what runs and
    benchmarks leave in ignored folders."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", pattern],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


def test_the_wheel_adds_only_the_magneto_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"magneto"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["magneto"]


def test_every_folder_with_code_is_listed_and_shipped(wheel):
    folders = {p.parent for p in _project_files("*/__init__.py")}
    folders = {f for f in folders if f.parts[len(ROOT.parts)] != "tests"}
    assert folders == set(package_dirs().values())
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {name.replace(".", "/") for name in modules()}
    missing = [
        m for m in expected if f"{m}.py" not in shipped and f"{m}/__init__.py" not in shipped
    ]
    assert missing == []
    for data in ("magneto/configs/synthetic.yaml", "magneto/service/static/index.html"):
        assert data in shipped


def test_the_console_command_points_into_the_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "magneto = magneto.cli.main:main" in text


def test_an_installed_copy_imports_from_its_own_files(wheel, tmp_path):
    """Installed away from the repository, the public face and a mapped folder import, and
    from the installed files, not from the source tree."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == [
        "bin",
        "magneto",
    ]
    code = (
        "import magneto, magneto.service.app, magneto.configs; from magneto import Predictor; "
        "print(magneto.__file__); print(magneto.service.app.__file__); "
        "print(magneto.configs.config_path('synthetic'))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(target) for p in shown), shown
