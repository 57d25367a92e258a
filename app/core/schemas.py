"""Base classes of the API's pydantic models."""

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A response shape, readable from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    trace_id: str | None = None
    invalid_params: list[dict[str, str]] | None = None
