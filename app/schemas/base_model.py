"""Base models: the public shape of a pretrained Hugging Face folder that jobs fine-tune."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BaseModelFile(BaseModel):
    path: str
    bytes: int
    sha256: str


class BaseModelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    family: str = Field(description="text-encoder (BERT-style), text-decoder (GPT-style), vision")
    model_type: str = Field(description="config.json's model_type, e.g. bert, gpt2, vit")
    parameters: int
    sha256: str = Field(description="the folder's identity: a hash of its files and their hashes")
    size_bytes: int
    files: list[BaseModelFile]
    read_only: bool = Field(description="provided by the operator: visible to every project")
    created_at: datetime


class BaseModelPage(BaseModel):
    items: list[BaseModelPublic]
    next_cursor: str | None
