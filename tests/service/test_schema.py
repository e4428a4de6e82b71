"""Property-based run of schemathesis against the service's own OpenAPI schema.

Every operation of the schema gets generated requests, schema-valid and invalid (both media
types of /v1/summarize); no response may be a 5xx, and every response must match the schema
(status code, content type and body). Driven through schemathesis' plain API: its pytest
plugin does not support the pytest version used here.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import API_KEY

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
    assert all(n > 0 for n in calls.values()), calls
