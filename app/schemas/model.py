import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A version number or an alias, in a predict path.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ArtifactFormat(enum.StrEnum):
    """GET /v1/models/{name}/versions/{v}/artifact?format=..."""

    safetensors = "safetensors"  # the version's checkpoint file, as stored
    hf = "hf"  # a fine-tuned base as a Hugging Face folder, in a .tar.gz
    onnx = "onnx"  # one ONNX graph, the stored preprocessing inside


class ModelSummary(BaseModel):
    name: str
    project: str
    latest_version: int | None
    created_at: datetime


class ModelPage(BaseModel):
    items: list[ModelSummary]
    next_cursor: str | None


class ModelVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model_name: str
    project: str
    version: int
    job_id: str
    task: str
    spec: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    classes: list[Any] | None
    input_shape: list[int]
    checkpoint_sha256: str
    parent: dict[str, Any] | None = Field(
        None, description="the version a warm start (spec init) began from: model and version"
    )
    created_at: datetime


class ModelDetail(BaseModel):
    name: str
    project: str
    created_at: datetime
    aliases: dict[str, int]
    versions: list[ModelVersionPublic]


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)


class AliasPublic(BaseModel):
    model_name: str
    alias: str
    version: int


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # One item per row; checked against the model's input shape by the predictor.
    inputs: list[Any] = Field(min_length=1)


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    job_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
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
