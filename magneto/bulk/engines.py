"""Which engine runs a bulk job: this machine, or a Ray cluster (imported only when asked
for, since Ray is an optional extra)."""

from __future__ import annotations

from typing import Any

from magneto.bulk.job import BulkJob, BulkReport, finished_job
from magneto.errors import MagnetoError

ENGINES = ("local", "ray")


def run_bulk(job: BulkJob, engine: str = "local", **ray_options: Any) -> BulkReport:
    """Run ``job`` on ``engine``; ``ray_options`` go to the Ray engine. A job whose ``--out``
    it already wrote is complete: its report comes back and nothing runs."""
    done = finished_job(job)
    if done is not None:
        return done
    if engine == "ray":
        from magneto.bulk.ray_engine import run_ray

        return run_ray(job, **ray_options)
    if engine != "local":
        raise MagnetoError(f"unknown engine {engine!r}: use local or ray")
    from magneto.bulk.local import run_local

    return run_local(job)
