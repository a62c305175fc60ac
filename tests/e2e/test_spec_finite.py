"""The embedded stack (SQLite) refuses NaN and ±Infinity in a job spec as PostgreSQL does,
instead of storing them as null: a 422 naming the field, and no job."""

import pytest

from tests.e2e.conftest import Stack
from tests.integration.test_spec_finite import NON_FINITE, assert_refused, raw_spec


@pytest.mark.parametrize(("training", "field"), NON_FINITE)
def test_nan_or_infinity_in_a_job_spec_is_a_422_on_sqlite_and_stores_nothing(
    embedded_stack: Stack, training: str, field: str
) -> None:
    api = embedded_stack.api().http
    name = f"finite-{field}"
    response = api.post(
        "/v1/jobs", content=raw_spec(name, training), headers={"Content-Type": "application/json"}
    )
    assert_refused(response.status_code, response.json(), field)
    listed = api.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert name not in {job["model_name"] for job in listed}
