"""The error bodies the API answers (app/api/errors.py writes them), for its OpenAPI: one
shape on /v1, the Open Inference Protocol's on /v2, and when each status happens."""

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """One problem of an error (app/core/errors.py: problem()). Beside these three, a detail
    may carry facts that help: suggestion (the field meant), features (in their order),
    setting and limit, id (of what is in the way), line and column (of bad JSON), ..."""

    model_config = ConfigDict(extra="allow")

    field: str | None = Field(
        description="The field at fault as the request wrote it (training.optimizer.lr, "
        "inputs.3, name); null when the problem is no one field's",
        examples=["training.optimiser"],
    )
    message: str = Field(
        description="What is wrong with it, for a person",
        examples=["unknown field; did you mean 'optimizer'?"],
    )
    type: str = Field(
        description="What kind of problem, in snake_case", examples=["extra_forbidden"]
    )


class ErrorBody(BaseModel):
    code: str = Field(
        description="What went wrong, in snake_case, stable for programs to test",
        examples=["not_found"],
    )
    message: str = Field(
        description="What went wrong, for a person; names the field at fault",
        examples=["no job with id '3f2a'"],
    )
    details: list[ErrorDetail] = Field(
        description="The problems, one per field at fault for a validation_error; otherwise "
        "this error's one problem with its facts (retry_after_s for too_many_requests, what "
        "uses it for an in-use conflict, the limit and setting of a 413), or none",
        examples=[[]],
    )


class ErrorResponse(BaseModel):
    """Every error on /v1 and the operations routes."""

    error: ErrorBody = Field(description="The error: its code, its message and its details")


class OpenInferenceError(BaseModel):
    """Every error on /v2, as the Open Inference Protocol's clients expect it."""

    error: str = Field(
        description="What went wrong, for a person", examples=["no model named 'iris'"]
    )


# What each status means on any route that declares it (app/api/openapi.py: errors_for), with
# the codes it comes with. A route whose status has a narrower meaning says so itself.
WHEN: dict[int, str] = {
    400: "A malformed request: a body that is not JSON (invalid_json), an "
    "X-Trainserve-Project header that is not a project name (invalid_project)",
    401: "No `Authorization: Bearer <key>` header (missing_key), or a key that is unknown "
    "or revoked (invalid_key)",
    403: "The key lacks the route's scope (insufficient_scope), or names another project "
    "with X-Trainserve-Project without being an admin key (wrong_project)",
    404: "Nothing of that name or id in the caller's project (not_found)",
    409: "The request conflicts with the current state (conflict)",
    413: "The body is larger than the server takes (payload_too_large: "
    "TRAINSERVE_MAX_REQUEST_BYTES, or the route's own limit)",
    415: "The body is not in a media type the route reads (unsupported_media_type)",
    422: "A parameter or a field of the body is invalid (validation_error); the message "
    "names the first field at fault, details lists them all",
    429: "Too many at once (too_many_requests); the Retry-After header says when to retry",
    503: "Not available now (unavailable); try again later",
    507: "The server's disk is full (storage_full): nothing was kept; retry once space is freed",
}
