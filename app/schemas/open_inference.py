"""The Open Inference Protocol (KServe V2) REST shapes."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class InferTensor(BaseModel):
    name: str = Field(max_length=256, description="The input's name (any: there is one)")
    shape: list[int] = Field(max_length=8, description="[rows, ...features]")
    datatype: str = Field(max_length=16, description="FP32, FP64, INT64, ..., or BYTES (text)")
    # absent when the binary extension carries the tensor (parameters.binary_data_size)
    data: list[Any] = Field(
        default_factory=list,
        description="The values, row-major (flat or nested); absent when the binary "
        "extension carries them (parameters.binary_data_size)",
    )
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: the tensor's bytes after the JSON header"
    )


class RequestedOutput(BaseModel):
    name: str = Field(max_length=256, description="predictions or probabilities")
    parameters: dict[str, Any] | None = Field(None, description="Accepted, not used")


class InferRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2],
                        }
                    ]
                }
            ]
        }
    )

    id: str | None = Field(None, max_length=256, description="Echoed in the response")
    inputs: list[InferTensor] = Field(min_length=1, description="Exactly one input tensor")
    outputs: list[RequestedOutput] | None = Field(
        None, description="The outputs wanted; none: all of them"
    )
    parameters: dict[str, Any] | None = Field(None, description="Accepted, not used")


class OutputTensor(BaseModel):
    name: str = Field(description="predictions or probabilities")
    shape: list[int] = Field(description="[rows] or [rows, classes]")
    datatype: str = Field(description="FP32, or BYTES (class labels as strings)")
    data: list[Any] = Field(description="The values, row-major and flat")


class InferResponse(BaseModel):
    model_name: str = Field(description="The model")
    model_version: str = Field(description="The version that answered")
    id: str | None = Field(None, description="The request's id, if it had one")
    outputs: list[OutputTensor] = Field(description="The outputs")


class TensorMetadata(BaseModel):
    name: str = Field(description="The tensor's name")
    datatype: str = Field(description="Its datatype")
    shape: list[int] = Field(description="Its shape; -1: any number of rows")


class ModelMetadata(BaseModel):
    name: str = Field(description="The model")
    versions: list[str] = Field(description="Its version numbers")
    platform: str = Field(description="What serves it")
    inputs: list[TensorMetadata] = Field(description="The input tensor infer takes")
    outputs: list[TensorMetadata] = Field(description="The output tensors infer gives")


class Live(BaseModel):
    live: bool = Field(description="Always true: the server answers")


class Ready(BaseModel):
    ready: bool = Field(description="Whether the database and broker are reachable")


class ModelReady(BaseModel):
    name: str = Field(description="The model's name")
    ready: bool = Field(description="Always true: the version is loaded (else an error)")
