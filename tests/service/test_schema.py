"""Property-based run of schemathesis against the service's own OpenAPI schema.

Every operation of the schema gets generated requests, schema-valid and invalid (both media
types of /v1/summarize); no response may be a 5xx, and every response must match the schema
(status code, content type and body). A second run, through schemathesis' engine, adds its
coverage phase and two more checks: schema-valid requests are accepted, and a method a path
does not declare is a 405 with an ``Allow`` header. Driven through schemathesis' plain API: its
pytest plugin does not support the pytest version used here. ``pytest -s`` shows the counts.
"""

from __future__ import annotations

import base64
import io
import random
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import engine
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import API_KEY

pytestmark = pytest.mark.slow  # starts servers, subprocesses or training runs

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_server_errors_and_no_schema_violations(server):
    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert "POST /v1/summarize" in labels and "POST /v1/summarize/batch" in labels
    calls = {label: 0 for label in labels}

    def runner(operation, mode):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case) -> None:
            case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)
            calls[operation.label] += 1

        return run

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                runner(operation, mode)()
            except Unsatisfiable:
                # Only an operation without any input has no invalid input to generate.
                assert mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET"
    print(f"schemathesis (fuzzing, 4 checks): calls per operation: {calls}")
    print(f"schemathesis (fuzzing, 4 checks): {sum(calls.values())} calls, 0 failures")
    assert all(n > 0 for n in calls.values()), calls


# Every phase (schema examples, coverage, fuzzing), driven by schemathesis' own engine: the
# coverage phase is where the unsupported-method probes (TRACE, PUT, ...) come from.
ENGINE_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",  # ST202: what the schema calls valid is accepted
    "unsupported_method",  # ST204: a method the schema does not list is a 405 with Allow
]
# Not negative_data_rejection: a batch answers a schema-invalid item with 200 and that item's
# error, by design, and where the exact rule is not JSON Schema (blank tags are dropped before
# they are counted; a lone multipart field may hold a list) the schema is narrower than the
# server, which that check reports and positive_data_acceptance does not.


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def test_every_phase_accepts_valid_data_and_answers_unsupported_methods(server):
    seed = random.SystemRandom().getrandbits(64)  # `random` itself is seeded by hypothesis
    config = SchemathesisConfig.from_dict(
        {
            "headers": {"X-API-Key": API_KEY},
            "workers": 1,
            "seed": seed,
            "checks": {"enabled": False, **{name: {"enabled": True} for name in ENGINE_CHECKS}},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "generation": {"mode": "all", "max-examples": 100, "database": "none"},
        }
    )
    schema = schemathesis.openapi.from_url(server + "/openapi.json", config=config)
    png = _png()

    @schema.hook
    def map_case(_, case):
        """A schema-valid image that also decodes: the schema can say "an image file", not
        "one that decodes", so positive cases get a real one. Negative cases keep theirs."""
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return case
        body = case.body if isinstance(case.body, dict) else {}
        items = body.get("items") if isinstance(body.get("items"), list) else []
        for item in [body, *items]:
            if isinstance(item, dict) and "image_base64" in item:
                item["image_base64"] = base64.b64encode(png).decode()
            if isinstance(item, dict) and "image" in item:
                item["image"] = png
        return case

    calls: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    checked: Counter[str] = Counter()
    failures: list[str] = []
    errors: list[str] = []
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                calls[recorder.label] += 1
                if interaction.response is not None:
                    statuses[(recorder.label, interaction.response.status_code)] += 1
            for case_id, nodes in recorder.checks.items():
                for node in nodes:
                    checked[node.name] += 1
                    if node.failure_info is not None:
                        case = recorder.cases[case_id].value
                        failure = node.failure_info.failure
                        failures.append(
                            f"{recorder.label} {node.name}: {failure.title}\n"
                            f"{failure.message}\n{case.as_curl_command()}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            errors.append(str(getattr(event, "info", None) or event.exception))

    server_errors = sum(n for (_, status), n in statuses.items() if status >= 500)
    print(f"schemathesis seed {seed}; calls per operation: {dict(sorted(calls.items()))}")
    print(f"schemathesis checks run: {dict(checked)}")
    print(
        f"schemathesis: {sum(calls.values())} calls, {server_errors} server errors, "
        f"{len(failures)} violations"
    )
    assert not errors, (seed, errors)
    assert not failures, f"seed {seed}\n" + "\n\n".join(failures)
    assert server_errors == 0
    assert set(calls) >= {"POST /v1/summarize", "POST /v1/summarize/batch", "GET /healthz"}
    assert set(checked) == set(ENGINE_CHECKS), checked
    # The checks had something to judge: positive cases scored, and unsupported methods sent.
    assert statuses[("POST /v1/summarize", 200)] > 0 and statuses[("POST /v1/summarize", 405)]
