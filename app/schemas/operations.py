"""What the operations routes answer: the root's links, liveness and readiness."""

from typing import Literal

from pydantic import BaseModel, Field


class Root(BaseModel):
    name: str = Field(description="The service: trainserve", examples=["trainserve"])
    version: str = Field(description="Its version")
    links: dict[str, str] = Field(
        description="Where to go next: docs, openapi, health, ready, metrics and the /v1 lists"
    )


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always ok: the process answers")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"] = Field(description="ready when every check is ok")
    checks: dict[str, str] = Field(
        description="Each dependency (database, broker, storage: the data dir's free space, "
        "artifact_store) and ok, or what is wrong with it",
        examples=[{"database": "ok", "broker": "ok", "storage": "ok", "artifact_store": "ok"}],
    )
