"""POST /v1/models/{name}/generate: a prompt in, the text a fine-tuned generator continues it
with out (or, with stream, Server-Sent Events of its tokens)."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.model import REF_PATTERN


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"prompt": "Once upon a time", "max_new_tokens": 32}]},
    )

    prompt: str = Field(
        min_length=1,
        max_length=100_000,
        description="The text to continue (at most TRAINSERVE_MAX_PROMPT_TOKENS tokens)",
    )
    max_new_tokens: int = Field(64, ge=1, description="at most TRAINSERVE_MAX_NEW_TOKENS")
    min_new_tokens: int = Field(0, ge=0, description="end of text is not chosen before these")
    temperature: float = Field(0.7, ge=0.0, le=10.0, description="0: the most likely token")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling's probability mass")
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="the same seed gives the same text; none: random"
    )
    stream: bool = Field(False, description="answer Server-Sent Events: a token each, then done")
    version: Annotated[str, Field(pattern=REF_PATTERN)] | Annotated[int, Field(ge=1)] | None = (
        Field(None, description="a version number or alias (default: production)")
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> "GenerateRequest":
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return self


class GenerateResponse(BaseModel):
    model_name: str = Field(description="The model")
    model_version: int = Field(description="The version that generated it")
    text: str = Field(description="The continuation: new text only, not the prompt")
    tokens: int = Field(description="new tokens generated")
    prompt_tokens: int = Field(description="The prompt's tokens")
    finish_reason: str = Field(description="length (max_new_tokens reached) or stop (end of text)")
