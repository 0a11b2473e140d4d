"""The Livepeer runner contract: request and response schemas of the official ai-runner (v0.14.1).

Field names, types and defaults match its OpenAPI (`LLMRequest`, `LLMResponse`, `LLMChoice`,
`LLMTokenUsage`, `HTTPError`, `HealthCheck`, `Version`, `HardwareInformation`). Where we are
stricter (range checks that the official runner only does after sending 200), it is to give
go-livepeer a 400 it understands instead of a broken stream.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

PIPELINE = "llm"

Role = Literal["system", "user", "assistant"]


class LLMMessage(BaseModel):
    role: Role
    content: str


class LLMRequest(BaseModel):
    """What go-livepeer POSTs to /llm. Unknown fields are ignored, as in the official runner."""

    model_config = ConfigDict(extra="ignore")

    messages: list[LLMMessage] = Field(min_length=1)
    model: str = ""
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    top_k: int = -1
    # JSON true or false only: go-livepeer's LLMRequest has `Stream *bool` (omitted when nil), so it never
    # sends anything else, and lax parsing would read "yes", "no", "1" or 0 as a choice the client never made.
    stream: StrictBool = False

    @field_validator("temperature", "top_p", "max_tokens", "top_k", mode="before")
    @classmethod
    def _reject_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value


class LLMTokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LLMChoice(BaseModel):
    index: int
    finish_reason: str = ""
    delta: LLMMessage | None = None
    message: LLMMessage | None = None


class LLMResponse(BaseModel):
    id: str
    model: str
    created: int
    usage: LLMTokenUsage
    choices: list[LLMChoice]


class APIError(BaseModel):
    msg: str


class HTTPError(BaseModel):
    detail: APIError


class HealthCheck(BaseModel):
    status: Literal["LOADING", "OK", "ERROR", "IDLE"]


class Version(BaseModel):
    pipeline: str = PIPELINE
    model_id: str
    version: str


class GPUComputeInfo(BaseModel):
    id: str
    name: str
    memory_total: int
    memory_free: int
    major: int
    minor: int


class HardwareInformation(BaseModel):
    pipeline: str = PIPELINE
    model_id: str
    gpu_info: dict[str, GPUComputeInfo]
    backend: str = Field("", description="Where tokens come from (extension; ignored by go-livepeer).")
