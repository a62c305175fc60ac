"""Base models: the public shape of a pretrained Hugging Face folder that jobs fine-tune."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BaseModelFile(BaseModel):
    path: str = Field(description="Its path in the folder")
    bytes: int = Field(description="Its size")
    sha256: str = Field(description="Its SHA-256, in hex")


class BaseModelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The base model's id")
    name: str = Field(description="What job specs call it (model.base)")
    family: str = Field(description="text-encoder (BERT-style), text-decoder (GPT-style), vision")
    model_type: str = Field(description="config.json's model_type, e.g. bert, gpt2, vit")
    parameters: int = Field(description="Its weights' count")
    sha256: str = Field(description="the folder's identity: a hash of its files and their hashes")
    size_bytes: int = Field(description="Its files' total size")
    files: list[BaseModelFile] = Field(description="Every file of the folder")
    read_only: bool = Field(description="provided by the operator: visible to every project")
    created_at: datetime = Field(description="When it was uploaded or imported (UTC)")


class BaseModelPage(BaseModel):
    items: list[BaseModelPublic] = Field(description="This page's base models")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")
