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
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.service.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
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


def test_dockerfile_shape():
    steps = _instructions()
    stages = [args.split(" AS ")[-1].strip() for k, args in steps if k == "FROM"]
    assert stages == ["gpu-build", "cpu-build", "cpu", "gpu"]  # gpu last: the default target
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"
    health = next(a for k, a in final if k == "HEALTHCHECK")
    assert "/healthz" in health
    assert ("CMD", '["serve"]') in final
    assert ("ENTRYPOINT", '["magneto-entrypoint"]') in final
    env = " ".join(a for k, a in final if k == "ENV")
    for name in ("MAGNETO_CHECKPOINT", "MAGNETO_HOST", "MAGNETO_PORT"):
        assert name in env
    base = next(a for k, a in steps if k == "ARG" and a.startswith("GPU_BASE="))
    assert "cuda" in base and "runtime" in base
    runs = " ".join(a for k, a in steps if k == "RUN")
    assert "pip install" in runs and runs.count("--no-cache-dir") == runs.count("pip install")
    assert "apt-get" not in runs  # no compilers or package caches in any layer


def test_cpu_and_gpu_images_differ_only_in_base_venv_and_device():
    """A stage cannot swap its base, so the two runtime stages repeat one tail: keep it so."""
    steps = _instructions()
    starts = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    cpu, gpu = steps[starts[2] + 1 : starts[3]], steps[starts[3] + 1 :]

    def normalise(stage: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, re.sub(r"--from=\w+-build|MAGNETO_DEVICE=\w+", "", a)) for k, a in stage]

    assert normalise(cpu) == normalise(gpu)
    assert ("COPY", "--from=gpu-build /opt/venv /opt/venv") in gpu
    assert "MAGNETO_DEVICE=auto" in " ".join(a for k, a in gpu if k == "ENV")


def test_compose_reserves_gpus_and_has_health_volumes_restart():
    compose = yaml.safe_load(COMPOSE.read_text())
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
    assert train["entrypoint"][0] == "torchrun" and "train" in train["command"]
    assert {v.split(":")[1] for v in train["volumes"]} >= {"/data", "/runs"}
    assert train["profiles"] == ["train"]
    config = next(c for c in train["command"] if c.startswith("--config="))
    assert (REPO / "configs" / Path(config.split("=", 1)[1]).name).is_file()


def _entry_env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETO_")}
    return {**env, "PATH": bin_dir + os.pathsep + env["PATH"], "PYTHONPATH": str(REPO), **extra}


def test_entry_script_starts_the_server_with_a_real_checkpoint(checkpoint):
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
        deadline = time.time() + 90
        ready = None
        while time.time() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert ready is not None and ready.json() == {"status": "ready"}
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


def test_other_commands_pass_through():
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "magneto", "--version"],
        env=_entry_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("magneto ")
