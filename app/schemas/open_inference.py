"""The Open Inference Protocol (KServe V2) REST shapes."""

from typing import Any

from pydantic import BaseModel, Field


class InferTensor(BaseModel):
    name: str = Field(max_length=256)
    shape: list[int] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    # absent when the binary extension carries the tensor (parameters.binary_data_size)
    data: list[Any] = Field(default_factory=list)
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = Field(None, max_length=256)
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Live(BaseModel):
    live: bool = Field(description="Always true: the server answers")


class Ready(BaseModel):
    ready: bool = Field(description="Whether the database and broker are reachable")


class ModelReady(BaseModel):
    name: str = Field(description="The model's name")
    ready: bool = Field(description="Always true: the version is loaded (else an error)")
