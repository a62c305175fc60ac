"""The predict response is written by hand on the hot path (app/schemas/model.py): its keys
are the schema's fields, so the docs describe what clients get."""

from app.schemas.model import PredictResponse, predict_response_body


def test_a_classifier_s_body_has_exactly_the_schema_s_fields() -> None:
    body = predict_response_body("m", 3, "job", ["cat"], [[0.9, 0.1]], ["cat", "dog"])
    assert set(body) == set(PredictResponse.model_fields)
    assert PredictResponse.model_validate(body).model_dump() == body


def test_a_regression_s_body_leaves_out_only_the_optional_probabilities() -> None:
    body = predict_response_body("m", 3, "job", [1.5], None)
    optional = {n for n, f in PredictResponse.model_fields.items() if not f.is_required()}
    assert optional == {"probabilities", "classes"}
    assert set(body) == set(PredictResponse.model_fields) - optional
