"""The shipped run configs (``magneto.configs``): the paper's NUS-WIDE and large-scale settings,
that setting scaled to a 2-core CPU, and the fast synthetic one, installed as package data so
that ``magneto quickstart`` finds them from any install. Imports nothing from the project."""

from importlib.resources import files
from pathlib import Path


def config_path(name: str) -> Path:
    """Path of a shipped config, e.g. ``config_path("synthetic")``."""
    path = Path(str(files(__name__) / f"{name}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config named {name!r}")
    return path
