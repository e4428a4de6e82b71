"""The container files, checked without a Docker engine (none runs on these machines)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml

from tests.readiness import wait_until_ready
from tests.service.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "docker" / "smoke.sh"
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_reports_nothing():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout
    # Any rule we silence must say why, on the line above.
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].strip().startswith("#") and len(lines[i - 1]) > 10


def test_every_copied_path_exists_and_is_not_docker_ignored():
    ignore = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#") and not p.startswith("!")
    ]
    sources = []
    for keyword, args in _instructions():
        if keyword != "COPY" or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        sources += parts[:-1]
    assert "docker/entrypoint.sh" in sources and "magneto" in sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not any(
            fnmatch.fnmatch(source, pat) or source.startswith(pat.rstrip("/") + "/")
            for pat in ignore
        ), f"{source} is excluded by .dockerignore"
    for pattern in (".venv", "data", "runs", "*.ckpt", ".git"):
        assert pattern in ignore, pattern


def _stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions)."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            current = []
            stages[name.strip()] = (base.strip(), current)
        elif stages:
            current.append((keyword, args))
    return stages


def test_dockerfile_shape():
    stages = _stages()
    # gpu last: the default target; both targets are the shared runtime plus one environment.
    assert list(stages) == ["sources", "build", "cpu-build", "gpu-build", "runtime", "cpu", "gpu"]
    assert stages["cpu"][0] == stages["gpu"][0] == "runtime"
    assert stages["runtime"][0] == stages["build"][0] == "${BASE}"
    runtime = stages["runtime"][1]
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"
    health = next(a for k, a in runtime if k == "HEALTHCHECK")
    assert "/healthz" in health
    assert ("CMD", '["serve"]') in runtime
    assert ("ENTRYPOINT", '["magneto-entrypoint"]') in runtime
    env = " ".join(a for k, a in runtime if k == "ENV")
    for name in ("MAGNETO_CHECKPOINT", "MAGNETO_HOST", "MAGNETO_PORT"):
        assert name in env
    base = next(a for k, a in _instructions() if k == "ARG" and a.startswith("BASE="))
    assert base == "BASE=python:3.11-slim-bookworm"
    runs = " ".join(a for k, a in _instructions() if k == "RUN")
    assert "pip install" in runs and runs.count("--no-cache-dir") == runs.count("pip install")
    assert "apt-get" not in runs  # no compilers or package caches in any layer
    # pip's settings are build arguments of the build stages, never ENV of a runtime stage.
    build_args = {a for k, a in stages["build"][1] if k == "ARG"}
    assert {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"} <= build_args
    for name in ("runtime", "cpu", "gpu"):
        assert "PIP_" not in " ".join(a for k, a in stages[name][1] if k in ("ENV", "ARG"))


def test_targets_differ_only_in_their_environment_and_device():
    stages = _stages()
    cpu, gpu = stages["cpu"][1], stages["gpu"][1]
    for target, stage in (("cpu", cpu), ("gpu", gpu)):  # torch first: the big, stable layer
        assert stage[:2] == [
            ("COPY", f"--from={target}-build /opt/torch /opt/torch"),
            ("COPY", f"--from={target}-build /opt/venv /opt/venv"),
        ]
    assert [k for k, _ in cpu] == [k for k, _ in gpu] == ["COPY", "COPY", "ENV"]
    assert "MAGNETO_DEVICE=cpu" in cpu[2][1]
    gpu_env = gpu[2][1]
    assert "MAGNETO_DEVICE=auto" in gpu_env and "NVIDIA_DRIVER_CAPABILITIES=compute" in gpu_env
    # torch: the CPU wheels for cpu, pip's own index (CUDA wheels) for gpu, both overridable.
    cpu_index = next(a for k, a in stages["cpu-build"][1] if k == "ARG")
    gpu_index = next(a for k, a in stages["gpu-build"][1] if k == "ARG")
    assert cpu_index == "CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu"
    assert gpu_index == 'GPU_TORCH_INDEX=""'


class _ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (!reset, !override) read as plain values."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: "!reset")
_ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_object(node))


def _container_path(volume: str) -> str:
    """``${VAR:-../data}:/data:ro`` -> ``/data``."""
    return next(p for p in re.split(r":(?=/)", volume)[1:]).split(":")[0]


def test_compose_reserves_gpus_and_has_health_volumes_restart():
    compose = yaml.load(COMPOSE.read_text(), Loader=_ComposeLoader)
    api, train = compose["services"]["api"], compose["services"]["train"]
    for service in (api, train):
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        assert service["build"]["target"] == "gpu"
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == REPO and (context / service["build"]["dockerfile"]).is_file()
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] == "unless-stopped"
    assert any(v.endswith(":/models:ro") for v in api["volumes"])
    assert api["environment"]["MAGNETO_CHECKPOINT"].startswith("/models/")
    # train goes through the image's entry script (torchrun only with several GPUs).
    assert "entrypoint" not in train and train["command"][0] == "train"
    assert {_container_path(v) for v in train["volumes"]} >= {"/data", "/runs"}
    assert train["profiles"] == ["train"]
    config = next(c for c in train["command"] if c.startswith("--config="))
    assert (REPO / "configs" / Path(config.split("=", 1)[1]).name).is_file()


def test_no_gpu_override_drops_exactly_the_gpu_reservations():
    compose = yaml.load(COMPOSE.read_text(), Loader=_ComposeLoader)
    override = yaml.load(
        (REPO / "docker" / "compose.no-gpu.yaml").read_text(), Loader=_ComposeLoader
    )
    assert set(override["services"]) == set(compose["services"])
    for service in override["services"].values():
        assert service == {"deploy": "!reset"}


def _entry_env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETO_")}
    return {**env, "PATH": bin_dir + os.pathsep + env["PATH"], "PYTHONPATH": str(REPO), **extra}


@pytest.mark.slow
def test_entry_script_starts_the_server_with_a_real_checkpoint(checkpoint, tiny_data):
    port = free_port()
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT)],
        env=_entry_env(
            MAGNETO_CHECKPOINT=str(checkpoint), MAGNETO_HOST="127.0.0.1", MAGNETO_PORT=str(port)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_ready(url, timeout=90, alive=lambda: proc.poll() is None, interval=0.3)
        assert httpx.get(url + "/readyz", timeout=5).json() == {"status": "ready"}
        # The smoke script's request and checks (docker/smoke.sh runs the same against images).
        data, images = tiny_data
        asked = subprocess.run(
            [
                sys.executable,
                str(REPO / "docker" / "smoke" / "ask.py"),
                f"http://127.0.0.1:{port}",
                str(data / "val.csv"),
                str(images),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asked.returncode == 0, asked.stderr
        assert '[smoke] answer: {"sent"' in asked.stdout and '"kept_tags"' in asked.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "env", "code", "fragment"),
    [
        (
            [],
            {"MAGNETO_CHECKPOINT": "/nonexistent/model.ckpt"},
            66,
            "checkpoint /nonexistent/model.ckpt not found: mount it",
        ),
        (["serve"], {}, 64, "no checkpoint: set MAGNETO_CHECKPOINT or pass --checkpoint PATH"),
        (
            ["serve", "--checkpoint", "/nope.ckpt"],
            {"MAGNETO_CHECKPOINT": "/etc/hostname"},
            66,
            "checkpoint /nope.ckpt not found",
        ),
        (["serve", "--checkpoint=/tmp"], {}, 66, "is not a regular file"),
    ],
)
def test_entry_script_refuses_a_missing_checkpoint_in_one_line(args, env, code, fragment):
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env=_entry_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("magneto-entrypoint: ") and fragment in lines[0]


def test_entry_script_refuses_an_unreadable_checkpoint():
    folder = Path(tempfile.mkdtemp(prefix="magneto-entry-", dir="/tmp"))
    try:
        folder.chmod(0o755)  # traversable by anyone, so only the file itself is unreadable
        secret = folder / "model.ckpt"
        secret.write_bytes(b"x")
        secret.chmod(0)
        script = folder / "entrypoint.sh"  # a copy: the checkout may not be traversable
        shutil.copy(ENTRYPOINT, script)
        script.chmod(0o755)
        command = ["sh", str(script)]
        if os.geteuid() == 0:  # root reads anything: check as an unprivileged user
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(
            command,
            env=_entry_env(MAGNETO_CHECKPOINT=str(secret)),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 77
    assert "is not readable by uid" in result.stderr


@pytest.mark.slow
def test_other_commands_pass_through():
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "magneto", "--version"],
        env=_entry_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("magneto ")


@pytest.mark.slow
def test_train_runs_magneto_train_on_one_device():
    for env in ({"MAGNETO_NPROC": "1"}, {}):  # {}: counts the GPUs itself (none here)
        result = subprocess.run(
            ["sh", str(ENTRYPOINT), "train", "--help"],
            env=_entry_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: magneto train")


def test_train_goes_through_torchrun_with_several_gpus(tmp_path):
    fake = tmp_path / "python"  # stands in for python: prints what it was asked to run
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    env = _entry_env(MAGNETO_NPROC="4")
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "pretrain", "--epochs=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "python -m torch.distributed.run --standalone --nproc_per_node=4 "
        "-m magneto.cli.main pretrain --epochs=1"
    )


def test_train_refuses_a_malformed_process_count():
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "train"],
        env=_entry_env(MAGNETO_NPROC="two"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64
    assert (
        result.stderr.strip()
        == "magneto-entrypoint: MAGNETO_NPROC must be a whole number, not 'two'"
    )


@pytest.mark.parametrize(
    ("files", "mirror"),
    [
        ({"sources.list.d/debian.sources": "Types: deb\nURIs: http://deb.example/debian\n"
          "Suites: bookworm\n\nTypes: deb\nURIs: http://security.example/debian-security\n"},
         "http://deb.example/debian"),
        ({"sources.list": "deb [arch=amd64] http://mirror.example/debian bookworm main\n"},
         "http://mirror.example/debian"),
        ({}, ""),
    ],
    ids=["deb822 only", "one-line only", "none"],
)  # fmt: skip
def test_the_smoke_scripts_mirror_lookup_never_kills_it(tmp_path, files, mirror):
    """Under set -euo pipefail, with only *.sources, only sources.list, or neither: the
    lookup answers (or answers nothing, for the caller to report) and exits 0."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    script = (
        "set -euo pipefail\n"
        f"eval \"$(sed -n '/^debian_mirror() {{/,/^}}/p' {SMOKE})\"\n"
        "debian_mirror\n"
    )
    done = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], "APT_ETC": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mirror
