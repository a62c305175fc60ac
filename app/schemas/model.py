import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

# A version number or an alias, in a predict path.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ArtifactFormat(enum.StrEnum):
    """GET /v1/models/{name}/versions/{v}/artifact?format=..."""

    safetensors = "safetensors"  # the version's checkpoint file, as stored
    hf = "hf"  # a fine-tuned base as a Hugging Face folder, in a .tar.gz
    onnx = "onnx"  # one ONNX graph, the stored preprocessing inside


class ModelSummary(BaseModel):
    name: str = Field(description="The model's name")
    project: str = Field(description="The project it belongs to")
    latest_version: int | None = Field(description="Its newest version; none: none yet")
    created_at: datetime = Field(description="When its first version was registered (UTC)")


class ModelPage(BaseModel):
    items: list[ModelSummary] = Field(description="This page's models, newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")


class ModelVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model_name: str = Field(description="The model")
    project: str = Field(description="The project it belongs to")
    version: int = Field(description="The version number, from 1, never reused")
    job_id: str = Field(description="The job that trained it")
    task: str = Field(description="classification, regression or generation")
    spec: dict[str, Any] = Field(description="The job spec it was trained with")
    dataset: dict[str, Any] = Field(description="The dataset it was trained on")
    metrics: dict[str, Any] = Field(description="The final metrics")
    classes: list[Any] | None = Field(
        description="A classifier's labels, in the order of its outputs"
    )
    input_shape: list[int] = Field(description="The shape of one input row")
    checkpoint_sha256: str = Field(description="The checkpoint file's SHA-256, in hex")
    parent: dict[str, Any] | None = Field(
        None, description="the version a warm start (spec init) began from: model and version"
    )
    created_at: datetime = Field(description="When it was registered (UTC)")


class ModelDetail(BaseModel):
    name: str = Field(description="The model's name")
    project: str = Field(description="The project it belongs to")
    created_at: datetime = Field(description="When its first version was registered (UTC)")
    aliases: dict[str, int] = Field(description="Each alias and the version it points to")
    versions: list[ModelVersionPublic] = Field(description="Every version, oldest first")


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="The version the alias points to")


class AliasPublic(BaseModel):
    model_name: str = Field(description="The model")
    alias: str = Field(description="The alias")
    version: int = Field(description="The version it points to now")


# For the digits MLP of DESIGN.md's spec: one row of 8x8 = 64 pixel values (0..16).
DIGITS_ROW: list[JsonValue] = [*[0.0] * 20, *[16.0] * 24, *[0.0] * 20]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"inputs": [DIGITS_ROW]}]}
    )

    # One item per row; checked against the model's input shape by the predictor.
    inputs: list[Any] = Field(
        min_length=1,
        description="One item per row: a list of numbers in feature order (tabular, or a "
        "flattened image), an object of named features, a string (text models), or a "
        "base64 PNG/JPEG (image models)",
    )


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "digits-mlp",
                    "model_version": 1,
                    "job_id": "0b6f4a3e-8f5e-4d6c-9a51-2f1d3c4b5a69",
                    "predictions": [3],
                    "probabilities": [[0.0, 0.01, 0.02, 0.9, 0.0, 0.03, 0.0, 0.01, 0.02, 0.01]],
                    "classes": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                }
            ]
        }
    )

    model_name: str = Field(description="The model")
    model_version: int = Field(description="The version that answered")
    job_id: str = Field(description="The job that trained that version")
    predictions: list[Any] = Field(
        description="One per row: a class label as the dataset named it, or a number (regression)"
    )
    probabilities: list[list[float]] | None = Field(
        None, description="Classifiers: per row, each class's probability; absent otherwise"
    )
    classes: list[Any] | None = Field(
        None, description="a classifier's labels, in the order of each row of probabilities"
    )


def predict_response_body(
    model_name: str,
    model_version: int,
    job_id: str,
    predictions: list[Any],
    probabilities: list[list[float]] | None,
    classes: list[Any] | None = None,
) -> dict[str, Any]:
    """PredictResponse's fields as a dict for orjson, built by hand on the hot path (the model
    would validate and copy every probability); no probabilities for a regression.
    tests/unit/test_predict_response.py holds its keys to the model's fields."""
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "job_id": job_id,
        "predictions": predictions,
    }
    if probabilities is not None:
        body["probabilities"] = probabilities
        body["classes"] = classes
    return body
