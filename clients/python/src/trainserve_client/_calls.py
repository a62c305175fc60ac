"""Every operation of trainserve's HTTP API as a Call: method, path, query, body, and how
the answer is read. The one place that knows the routes (app/api/routers on the server);
Client and AsyncClient send these and differ only in how."""

import uuid
from typing import Any
from urllib.parse import quote

from trainserve_client._http import Call, Source, Upload, form_fields, no_body
from trainserve_client.types import (
    Alias,
    BaseModel,
    Dataset,
    DryRun,
    Generation,
    Job,
    JobDetail,
    Key,
    KeyCreated,
    MetricPoint,
    Model,
    ModelSummary,
    ModelVersion,
    Page,
    Prediction,
    Worker,
)

STREAM_READ_S = 60.0  # past the event stream's 15 s keep-alive, with room
ARTIFACT_READ_S = 600.0  # an ONNX or HF export is built on its first request


def _path(*parts: str | int) -> str:
    """A path from segments, each quoted: a name or id never adds or leaves a segment."""
    return "/" + "/".join(quote(str(part), safe="") for part in parts)


def _get(*parts: str | int, params: dict[str, Any] | None = None) -> Call[Any]:
    return Call("GET", _path(*parts), params=params, retry=True)


def _delete(*parts: str | int) -> Call[None]:
    return Call("DELETE", _path(*parts), parse=no_body)


def _page(cursor: str | None, limit: int, **filters: Any) -> dict[str, Any]:
    query = {"limit": limit, **{k: v for k, v in filters.items() if v is not None}}
    return query if cursor is None else {**query, "cursor": cursor}


# Datasets


def upload_dataset(source: Source, name: str, fmt: str, form: dict[str, Any]) -> Call[Dataset]:
    fields = form_fields({"name": name, "format": fmt, **form})
    return Call("POST", "/v1/datasets", upload=Upload(source, fields))


def list_datasets(cursor: str | None, limit: int) -> Call[Page[Dataset]]:
    return _get("v1", "datasets", params=_page(cursor, limit))


def get_dataset(dataset_id: str) -> Call[Dataset]:
    return _get("v1", "datasets", dataset_id)


def delete_dataset(dataset_id: str) -> Call[None]:
    return _delete("v1", "datasets", dataset_id)


# Base models


def upload_base_model(source: Source, name: str) -> Call[BaseModel]:
    return Call("POST", "/v1/base-models", upload=Upload(source, form_fields({"name": name})))


def list_base_models(cursor: str | None, limit: int) -> Call[Page[BaseModel]]:
    return _get("v1", "base-models", params=_page(cursor, limit))


def get_base_model(base_id: str) -> Call[BaseModel]:
    return _get("v1", "base-models", base_id)


def delete_base_model(base_id: str) -> Call[None]:
    return _delete("v1", "base-models", base_id)


# Jobs


def submit_job(spec: dict[str, Any], idempotency_key: str | None) -> Call[Job]:
    """Always with an Idempotency-Key, so that sending it again (after a lost answer or a
    503) returns the job the first send made instead of making a second."""
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key}, retry=True)


def validate_job(spec: dict[str, Any]) -> Call[DryRun]:
    return Call("POST", "/v1/jobs", params={"dry_run": "true"}, json=spec, retry=True)


def list_jobs(status: str | None, cursor: str | None, limit: int) -> Call[Page[Job]]:
    return _get("v1", "jobs", params=_page(cursor, limit, status=status))


def get_job(job_id: str) -> Call[JobDetail]:
    return _get("v1", "jobs", job_id)


def job_metrics(job_id: str) -> Call[list[MetricPoint]]:
    return _get("v1", "jobs", job_id, "metrics")


def cancel_job(job_id: str) -> Call[Job]:
    return Call("POST", _path("v1", "jobs", job_id, "cancel"))


def job_events(job_id: str, last_event_id: str | None) -> Call[None]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    path = _path("v1", "jobs", job_id, "events")
    return Call("GET", path, headers=headers, retry=True, read_timeout=STREAM_READ_S)


# Models


def list_models(cursor: str | None, limit: int) -> Call[Page[ModelSummary]]:
    return _get("v1", "models", params=_page(cursor, limit))


def get_model(name: str) -> Call[Model]:
    return _get("v1", "models", name)


def get_version(name: str, version: int) -> Call[ModelVersion]:
    return _get("v1", "models", name, "versions", version)


def delete_version(name: str, version: int) -> Call[None]:
    return _delete("v1", "models", name, "versions", version)


def set_alias(name: str, alias: str, version: int) -> Call[Alias]:
    return Call("PUT", _path("v1", "models", name, "aliases", alias), json={"version": version})


def delete_alias(name: str, alias: str) -> Call[None]:
    return _delete("v1", "models", name, "aliases", alias)


def predict(name: str, inputs: list[Any], version: int | str | None) -> Call[Prediction]:
    """`version`: a version number or an alias; None: production if set, else the latest."""
    parts = ("v1", "models", name) if version is None else ("v1", "models", name, "versions")
    ref = () if version is None else (version,)
    return Call("POST", _path(*parts, *ref, "predict"), json={"inputs": inputs})


def generate(
    name: str, prompt: str, version: int | str | None, stream: bool, options: dict[str, Any]
) -> Call[Generation]:
    """Unlike predict, generate takes the version in its body, and as a string only."""
    body = {"prompt": prompt, **options, "stream": stream}
    if version is not None:
        body["version"] = str(version)
    read = STREAM_READ_S if stream else None
    return Call("POST", _path("v1", "models", name, "generate"), json=body, read_timeout=read)


def artifact(name: str, version: int, fmt: str) -> Call[None]:
    path = _path("v1", "models", name, "versions", version, "artifact")
    return Call("GET", path, params={"format": fmt}, retry=True, read_timeout=ARTIFACT_READ_S)


# Keys (an admin key's)


def create_key(name: str | None, scopes: list[str], project: str | None) -> Call[KeyCreated]:
    body: dict[str, Any] = {"scopes": list(scopes)}
    if name is not None:
        body["name"] = name
    if project is not None:
        body["project"] = project
    return Call("POST", "/v1/keys", json=body)


def list_keys(cursor: str | None, limit: int) -> Call[Page[Key]]:
    return _get("v1", "keys", params=_page(cursor, limit))


def revoke_key(key_id: str) -> Call[None]:
    return _delete("v1", "keys", key_id)


# Workers


def list_workers(pool: str | None, cursor: str | None, limit: int) -> Call[Page[Worker]]:
    return _get("v1", "workers", params=_page(cursor, limit, pool=pool))
