"""schemathesis against the served OpenAPI schema, over every route: with a valid admin key
no response is a 5xx and every response matches the schema; without a key every protected
route answers 401. Cases per route: TRAINSERVE_FUZZ_EXAMPLES (default 50, over 1000 in all)."""

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from app.main import create_app
from tests.integration.conftest import ADMIN_KEY

EXAMPLES = int(os.environ.get("TRAINSERVE_FUZZ_EXAMPLES", "50"))
OPEN = {"/", "/healthz", "/readyz"}  # /metrics takes a key unless TRAINSERVE_METRICS_OPEN
# A 4xx for a request the schema allows is fine here (a dataset that does not exist, a spec
# whose arch does not fit its data): what must never happen is a 5xx or an off-schema answer.
CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
    checks.status_code_conformance,  # every status a route answers is in its docs
]


@pytest.fixture(scope="module")
def operations(configured: dict[str, str]) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation: Any, check: Callable[[Any], None]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: Any) -> None:
        check(case)

    run()


def test_no_server_errors_and_every_response_matches_the_schema(operations: list[Any]) -> None:
    seen: Counter[str] = Counter()

    def check(case: Any) -> None:
        seen[case.operation.label] += 1
        if case.operation.path.endswith("/events"):  # a live stream: its own tests cover it
            case.path_parameters = {"job_id": "no-such-job"}
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=CHECKS)

    for operation in operations:
        fuzz(operation, check)
    print(f"fuzz: {sum(seen.values())} cases over {len(seen)} operations")
    assert len(seen) == len(operations) and sum(seen.values()) >= min(1000, 20 * EXAMPLES)


def test_the_documented_examples_get_documented_answers(operations: list[Any]) -> None:
    """The docs' examples (the job spec, predict's rows, ...) sent as they are: no 5xx, and
    answers in the documented shapes and statuses."""
    tried: Counter[str] = Counter()
    for operation in operations:
        if operation.path.endswith("/events"):  # a live stream: its own tests cover it
            continue
        for strategy in operation.get_strategies_from_examples(fill_missing=True):

            @given(case=strategy)
            @settings(
                max_examples=5,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                tried[case.operation.label] += 1
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=CHECKS
                )

            run()
    print(f"examples: {sum(tried.values())} cases over {len(tried)} operations: {sorted(tried)}")
    assert "POST /v1/jobs" in tried and "POST /v1/models/{name}/predict" in tried


def test_every_protected_route_needs_a_key(operations: list[Any]) -> None:
    for operation in operations:
        if operation.path in OPEN:
            continue

        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": ""})
            assert response.status_code == 401, (
                case.operation.label,
                response.status_code,
                response.text,
            )

        fuzz(operation, check)
