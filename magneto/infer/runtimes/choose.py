"""``--runtime auto``: time the runtimes this machine can run, keep those whose answers agree
with float32's, pick the fastest, and remember the choice for this machine and trunk.

A candidate is kept when its keep/drop decisions equal float32's on at least
:data:`MIN_AGREEMENT` of the checked tags (the tolerance the tests hold int8 to on a
validation split) and, for batches of more than one, when it answers one item no slower than
float32 does (within timing noise). Agreement is measured on the calibration images when there
are some; int8's, whose ranges fit the user's images and not noise, is measured on them once
and recorded with the int8 trunk.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from magneto.data.images import DEFAULT_MAX_PIXELS
from magneto.devices import describe_cpu
from magneto.infer.runtimes.calibration import Calibration
from magneto.infer.runtimes.candidates import Candidates
from magneto.infer.runtimes.measure import measure
from magneto.infer.runtimes.trunks import (
    RUNTIME_CHOICES,
    RUNTIMES,
    RuntimeUnavailable,
    TrunkRuntime,
)
from magneto.model.architectures import TagModel

log = logging.getLogger("magneto.runtime")

MIN_AGREEMENT = 0.995
BATCH1_SLACK = 1.10  # "no slower than float32 on one item", allowing for timing noise
ROUNDS = 5


@dataclass
class RuntimeChoice:
    """Which runtime runs the trunk, and on what evidence (``source``: ``forced`` by the
    caller, ``measured`` now, ``cached`` from an earlier measurement on this machine, or
    ``only``: nothing to choose)."""

    name: str
    requested: str
    source: str
    batch_size: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    batch1_ms: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The one log line: the choice, and the figures it was made on."""
        head = f"runtime {self.name}"
        if self.source == "forced":
            return f"{head} (forced with --runtime {self.name})"
        if self.source == "only":
            return f"{head} (only candidate; {'; '.join(self.skipped.values())})"
        ranked = sorted(self.timings_ms.items(), key=lambda x: x[1])
        parts = [f"ms per batch of {self.batch_size}: " + ", ".join(f"{n} {t}" for n, t in ranked)]
        one = ", ".join(f"{n} {self.batch1_ms[n]}" for n, _ in ranked if n in self.batch1_ms)
        parts.append(f"ms per item: {one}")
        agree = ", ".join(
            f"{n} {100 * self.agreement[n]:.1f}%" for n, _ in ranked if n != "float32"
        )
        parts.append(f"decisions equal to float32's: {agree}")
        parts += [f"not {n}: {why}" for n, why in self.skipped.items()]
        return f"{head} ({self.source}; {'; '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _key(candidates: Candidates, names: list[str], batch_size: int) -> str:
    """What a measured choice depends on; any change measures again."""
    device = candidates.device
    facts = {
        "trunk": candidates.cache.digest,
        "candidates": names,
        "int8": candidates.int8_identity() if "int8" in names else None,
        "cpu": describe_cpu(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "batch_size": batch_size,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _record_int8_agreement(candidates: Candidates, agreement: dict[str, float]) -> None:
    cache = candidates.cache
    record = cache.read_json(cache.latest_int8) or {}
    if candidates.calibration is not None:
        cache.write_json(cache.latest_int8, {**record, "agreement": agreement["int8"]})
    else:
        agreement["int8"] = float(record.get("agreement", 0.0))


def _forced(
    candidates: Candidates, name: str, batch_size: int
) -> tuple[TrunkRuntime, RuntimeChoice]:
    problem = candidates.unavailable(name)
    if name == "bf16" and problem is not None:
        log.warning("--runtime bf16: %s", problem)  # forced: slower, still correct
    elif problem is not None:
        raise RuntimeUnavailable(f"--runtime {name} cannot run here: {problem}")
    return candidates.build(name), RuntimeChoice(name, name, "forced", batch_size)


def choose_runtime(
    model: TagModel,
    *,
    device: torch.device,
    requested: str = "auto",
    input_size: int,
    threshold: float = 0.5,
    batch_size: int = 32,
    calibration: Calibration | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    rounds: int = ROUNDS,
) -> tuple[TrunkRuntime | None, RuntimeChoice]:
    """The runtime for ``model`` (None for a model without images) and why it was chosen.
    A forced runtime that cannot run here raises :class:`RuntimeUnavailable` in one line."""
    if requested not in RUNTIME_CHOICES:
        raise RuntimeUnavailable(
            f"unknown runtime {requested!r}; choose one of {', '.join(RUNTIME_CHOICES)}"
        )
    if not model.uses_images:
        if requested in ("onnx", "int8"):
            raise RuntimeUnavailable(
                f"--runtime {requested} runs the image trunk, and this "
                f"{model.config.architecture} model reads no images; use --runtime auto"
            )
        reason = {"all": "the model reads no images"}
        return None, RuntimeChoice("float32", requested, "only", batch_size, skipped=reason)
    candidates = Candidates(model, device, input_size, calibration, max_pixels)
    if requested != "auto":
        return _forced(candidates, requested, batch_size)
    skipped = {n: why for n in RUNTIMES if (why := candidates.unavailable(n)) is not None}
    names = [n for n in RUNTIMES if n not in skipped]
    if names == ["float32"]:
        only = RuntimeChoice("float32", "auto", "only", batch_size, skipped=skipped)
        return candidates.build("float32"), only
    key = _key(candidates, names, batch_size)
    cached = candidates.cache.read_json(candidates.cache.choice(key))
    if cached is not None and cached.get("name") in names:
        choice = RuntimeChoice(**{**cached, "source": "cached", "requested": "auto"})
        return candidates.build(choice.name), choice
    runtimes: dict[str, TrunkRuntime] = {}
    for name in names:
        try:
            runtimes[name] = candidates.build(name)
        except Exception as exc:  # an exporter or quantizer failure drops that candidate only
            skipped[name] = f"could not be prepared: {str(exc).splitlines()[0][:200]}"
    found = measure(
        model,
        runtimes,
        candidates.check_images(),
        threshold=threshold,
        batch_size=batch_size,
        rounds=rounds,
        device=device,
    )
    if "int8" in found.agreement:
        _record_int8_agreement(candidates, found.agreement)
    for name in list(runtimes):
        agree, one, one_f32 = found.agreement[name], found.item_ms[name], found.item_ms["float32"]
        if agree < MIN_AGREEMENT:
            skipped[name] = f"decisions equal to float32's on only {100 * agree:.1f}%"
        elif batch_size > 1 and one > BATCH1_SLACK * one_f32:
            skipped[name] = f"one item takes {one:.1f} ms, float32 {one_f32:.1f} ms"
    eligible = [n for n in runtimes if n not in skipped]
    best = min(eligible, key=lambda n: found.batch_ms[n])
    choice = RuntimeChoice(
        best,
        "auto",
        "measured",
        batch_size,
        found.batch_ms,
        found.item_ms,
        found.agreement,
        skipped,
    )
    candidates.cache.write_json(candidates.cache.choice(key), choice.as_dict())
    return runtimes[best], choice
