import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, HttpUrl

from app.core.schemas import RequestSchema, Schema
from app.signing.engine import Certification, PadesLevel
from app.signing.schemas import AppearanceIn


class SigningProfileIn(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "contracts",
                    "description": "Long-term signatures, visible on the first page",
                    "level": "B-LT",
                    "tsa_url": None,
                    "certify": "no_changes",
                    "appearance": {"page": 1, "box": [36, 36, 236, 96]},
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$",
        description="What a sign request's `profile` names.",
    )
    description: str = Field(default="", max_length=2000)
    level: PadesLevel | None = Field(
        default=None, description="Null: the request's, else the signing settings'."
    )
    tsa_url: HttpUrl | None = Field(
        default=None, description="Null: the signing settings' TSA, else the server's."
    )
    certify: Certification | None = Field(
        default=None, description="Null: the request's, else none."
    )
    appearance: AppearanceIn | None = Field(
        default=None,
        description="The stamp of requests that give no appearance; null: the signing settings' default.",
    )


class SigningProfileRead(Schema):
    id: uuid.UUID
    name: str
    description: str
    level: PadesLevel | None
    tsa_url: str | None
    certify: Certification | None
    appearance: AppearanceIn | None
    created_at: datetime
    updated_at: datetime


class SigningProfileChoice(Schema):
    """What a signer needs to pick a profile: not its TSA or its stamp."""

    name: str
    description: str
    level: PadesLevel | None
    certify: Certification | None
