"""Where a run caches its backbone features (magneto.train.run_data.feature_cache_dir)."""

from __future__ import annotations

import os

import pytest

from magneto.config import ConfigError, RunConfig
from magneto.train.run_data import feature_cache_dir


def _read_only(monkeypatch: pytest.MonkeyPatch, folder) -> None:
    """As a ``:ro`` mount looks to os.access (root ignores permission bits, not EROFS)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(path).startswith(str(folder)):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_cache_goes_next_to_a_writable_dataset(tmp_path):
    config = RunConfig(data=str(tmp_path), out=str(tmp_path / "run"))
    assert feature_cache_dir(config) == tmp_path / "feature_cache"


def test_cache_goes_into_the_run_when_the_dataset_is_read_only(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    data.mkdir()
    _read_only(monkeypatch, data)
    config = RunConfig(data=str(data), out=str(tmp_path / "run"))
    with caplog.at_level("INFO", logger="magneto.train.run_data"):
        assert feature_cache_dir(config) == tmp_path / "run" / "feature_cache"
    assert f"{data} is read-only" in caplog.text


def test_an_existing_read_only_cache_is_not_reused_for_writing(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "feature_cache").mkdir(parents=True)
    _read_only(monkeypatch, data / "feature_cache")
    config = RunConfig(data=str(data), out=str(tmp_path / "run"))
    assert feature_cache_dir(config) == tmp_path / "run" / "feature_cache"


def test_a_configured_folder_wins(tmp_path, monkeypatch):
    _read_only(monkeypatch, tmp_path)
    config = RunConfig(data=str(tmp_path), feature_cache_dir="/elsewhere")
    assert str(feature_cache_dir(config)) == "/elsewhere"


def test_read_only_dataset_and_no_run_folder_is_a_config_error(tmp_path, monkeypatch):
    _read_only(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="read-only: pass --feature-cache-dir"):
        feature_cache_dir(RunConfig(data=str(tmp_path)))


def test_a_run_directory_that_is_a_file_is_refused_by_the_library_too(tmp_path):
    from magneto.devices import check_run_dir

    out = tmp_path / "run"
    out.write_text("my notes")
    for resume in (False, True):
        with pytest.raises(ConfigError, match="is a file, not a run directory"):
            check_run_dir(out, resume)
    assert out.read_text() == "my notes"
