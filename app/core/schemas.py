"""Base classes of the API's pydantic models, and the field types they share."""

import base64
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
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


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omittable(**constraints: Any) -> Any:
    """A field of a partial update that may be left out, but not set to null.

    Declare it without None in its type: `null` then fails validation (422), while
    an omitted field keeps a None default that is never validated and never read
    (updates apply `model_dump(exclude_unset=True)`). The schema shows no default.
    """
    return Field(default=None, json_schema_extra=_without_default, **constraints)


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


def decode_base64(text: str) -> bytes:
    """Strict standard base64 (no whitespace, no URL alphabet).

    Raises:
        ValueError: not base64; non-ASCII text included (binascii.Error is a ValueError).
    """
    return base64.b64decode(text, validate=True)


_Encoded = TypeVar("_Encoded", str, SecretStr)


def _checked_base64(value: _Encoded) -> _Encoded:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    try:
        decode_base64(text)
    except ValueError:
        raise PydanticCustomError(
            "base64",
            "not base64: only A-Z, a-z, 0-9, '+' and '/', '=' padding, no spaces",
        ) from None
    return value


# A base64 field: text that does not decode is refused by validation (422 naming the field).
Base64Text = Annotated[str, AfterValidator(_checked_base64)]
# The same, for content that must never be logged or echoed (a PKCS#12 file).
SecretBase64 = Annotated[SecretStr, AfterValidator(_checked_base64)]
