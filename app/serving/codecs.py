"""The two wire formats of predict, each a parse and an encode around the same rows and
answers: trainserve's own JSON (POST /v1/.../predict) and the Open Inference Protocol
(POST /v2/.../infer, app/serving/open_inference.py). The front door (app/serving/front_door.py)
runs them; nothing here knows HTTP beyond the body and two headers."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.core.errors import AppError
from app.schemas.model import PredictRequest, PredictResponse, predict_response_body
from app.schemas.open_inference import InferRequest, InferResponse
from app.serving import open_inference
from app.serving.predictor import check_json_containers
from app.serving.runtime import Answer

JSON_TYPES = ("/json", "+json")


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class Parsed:
    rows: list[Any]  # one item per row, as Serving.handle takes them
    request: Any = None  # what encode needs of the request (V2: its id and wanted outputs)
    numbers_only: bool = False  # no value in the body but numbers (Serving.handle)


class Codec(Protocol):
    @property
    def request_model(self) -> type[BaseModel]: ...  # what the body is, for the docs

    @property
    def response_model(self) -> type[BaseModel]: ...  # what encode writes, for the docs

    def parse(self, raw: bytes, headers: Mapping[str, str], max_rows: int) -> Parsed: ...

    def encode(self, answer: Answer, parsed: Parsed) -> bytes: ...


class PredictJson:
    """{"inputs": [row, ...]} → {"model_name", "model_version", "job_id", "predictions",
    "probabilities"}."""

    request_model = PredictRequest
    response_model = PredictResponse

    def parse(self, raw: bytes, headers: Mapping[str, str], max_rows: int) -> Parsed:
        media_type = headers.get("content-type", "application/json").split(";")[0].strip()
        if not media_type.lower().endswith(JSON_TYPES):
            raise UnsupportedMediaType(
                f"send the body as application/json, not '{media_type[:100]}'"
            )
        if not raw:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        return Parsed(_inputs(raw, max_rows), numbers_only=_numbers_only(raw))

    def encode(self, answer: Answer, parsed: Parsed) -> bytes:
        # orjson writes the fields several times faster than the response model would.
        prediction = answer.prediction
        return orjson.dumps(
            predict_response_body(
                answer.model_name,
                answer.model_version,
                answer.job_id,
                prediction.predictions,
                prediction.probabilities,
                prediction.classes,
            )
        )


# What a body of {"inputs": [[numbers]]} is made of, besides its one key.
_NUMBER_BODY_BYTES = b"0123456789.eE+-,[]{}: \t\r\n"


def _numbers_only(raw: bytes) -> bool:
    """Whether the (parsed) body's only string is its "inputs" key: then every value is a
    number, for no other JSON value (a string, true, false, null) can be written without
    a quote or a letter. Checked in C, at a third of the cost of checking each value's type."""
    return raw.translate(None, _NUMBER_BODY_BYTES) == b'"inputs"'


def _inputs(raw: bytes, max_rows: int) -> list[Any]:
    """The body's `inputs`. orjson parses it; a body that is not exactly {"inputs": [...]}
    is validated again by PredictRequest, for the errors every other route gives."""
    check_json_containers(raw, max_rows)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None  # pydantic says where, below
    inputs = body.get("inputs") if type(body) is dict and len(body) == 1 else None
    if type(inputs) is list and inputs:
        return inputs
    try:
        return PredictRequest.model_validate_json(raw).inputs
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


class OpenInference:
    """One input tensor (JSON data, or the binary extension) → predictions and, for
    classifiers, probabilities, as output tensors."""

    request_model = InferRequest
    response_model = InferResponse

    def parse(self, raw: bytes, headers: Mapping[str, str], max_rows: int) -> Parsed:
        header_length = headers.get("inference-header-content-length")
        request, rows = open_inference.read_request(raw, header_length, max_rows)
        return Parsed(rows, request)

    def encode(self, answer: Answer, parsed: Parsed) -> bytes:
        request: InferRequest = parsed.request
        wanted = {o.name for o in request.outputs} if request.outputs else None
        response = InferResponse(
            model_name=answer.model_name,
            model_version=str(answer.model_version),
            id=request.id,
            outputs=open_inference.outputs(answer.prediction, wanted),
        )
        return response.model_dump_json(exclude_none=True).encode()
