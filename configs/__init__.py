"""The shipped run configs (installed as the ``magneto_configs`` package data)."""

from importlib.resources import files
from pathlib import Path


def config_path(name: str) -> Path:
    """Path of a shipped config, e.g. ``config_path("synthetic")``."""
    path = Path(str(files(__name__) / f"{name}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config named {name!r}")
    return path
