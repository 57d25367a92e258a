"""Base classes of the API's pydantic models."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

# As many unknown fields as a validation error lists (app.core.errors.MAX_INVALID_PARAMS).
_MAX_UNKNOWN_LISTED = 20
_known_keys: dict[type, frozenset[str]] = {}


class Schema(BaseModel):
    """A response shape, readable from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_many_unknown_fields(cls, data: Any) -> Any:
        """Refuse an object with many unknown fields as one error, before validation.

        Pydantic reports each unknown field as an error of its own; a 1 MiB body
        holds ~100,000 of them, and turning that many errors into Python objects
        takes seconds. A few unknown fields still get pydantic's own errors.
        """
        if not isinstance(data, dict) or cls.model_config.get("extra") != "forbid":
            return data
        known = _known_keys.get(cls)
        if known is None:
            known = _known_keys[cls] = frozenset(
                name
                for field_name, info in cls.model_fields.items()
                for name in (field_name, info.alias)
                if name
            )
        unknown = len(data) - len(data.keys() & known)
        if unknown <= _MAX_UNKNOWN_LISTED:
            return data
        listed = []
        for key in data:
            if key not in known:
                listed.append(str(key)[:100])
                if len(listed) == _MAX_UNKNOWN_LISTED:
                    break
        raise PydanticCustomError(
            "extra_forbidden",
            "{count} unknown fields are not permitted: {listed}, …",
            {"count": unknown, "listed": ", ".join(listed)},
        )


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    trace_id: str | None = None
    invalid_params: list[dict[str, str]] | None = None
    invalid_params_omitted: int | None = None
