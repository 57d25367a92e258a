import uuid
from datetime import datetime

from pydantic import ConfigDict, EmailStr, Field, SecretStr

from app.access.entitlements import Entitlement
from app.access.models import UserStatus
from app.core.schemas import RequestSchema, Schema, omittable


class DepartmentCreate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Finance", "description": "Invoices and contracts"}]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class DepartmentUpdate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"description": "Invoices, contracts, payroll"}]
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class DepartmentRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b8f6c1e-4c1a-4a53-9a53-6f1b8f1d2a10",
                    "name": "Finance",
                    "description": "Invoices and contracts",
                    "created_at": "2026-11-23T09:30:00Z",
                    "updated_at": "2026-11-23T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class RoleCreate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "invoice-signer",
                    "description": "Signs invoices",
                    "entitlements": ["documents:read", "documents:sign"],
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.\-]+$")
    description: str = Field(default="", max_length=2000)
    entitlements: list[Entitlement] = Field(default_factory=list, max_length=256)


class RoleUpdate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entitlements": [
                        "documents:read",
                        "documents:sign",
                        "documents:verify",
                    ]
                }
            ]
        }
    )

    name: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.\-]+$"
    )
    description: str | None = Field(default=None, max_length=2000)
    entitlements: list[Entitlement] | None = Field(default=None, max_length=256)


class RoleRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d0c1c3e-8f57-4b0e-9d7e-0f3f8d7f4a21",
                    "name": "signer",
                    "description": "Uploads, signs and verifies documents.",
                    "is_builtin": True,
                    "entitlements": ["documents:read", "documents:sign"],
                    "created_at": "2026-11-23T09:30:00Z",
                    "updated_at": "2026-11-23T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    description: str
    is_builtin: bool
    entitlements: list[str]
    created_at: datetime
    updated_at: datetime


class EntitlementRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "documents:sign", "description": "Sign documents."}]
        }
    )

    name: str
    description: str


class RoleRef(Schema):
    id: uuid.UUID
    name: str


class UserCreate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "alice",
                    "email": "alice@example.com",
                    "full_name": "Alice Martin",
                    "password": "Correct-Horse-9",
                    "department_id": None,
                    "role_ids": ["5d0c1c3e-8f57-4b0e-9d7e-0f3f8d7f4a21"],
                }
            ]
        }
    )

    username: str = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@\-]+$")
    email: EmailStr | None = None
    full_name: str = Field(default="", max_length=200)
    password: SecretStr = Field(min_length=1, max_length=1024)
    department_id: uuid.UUID | None = None
    role_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)


class UserUpdate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"full_name": "Alice Martin-Durand", "role_ids": []}]
        }
    )

    email: EmailStr | None = None
    full_name: str = omittable(max_length=200)
    department_id: uuid.UUID | None = None
    role_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)


class UserRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9a3e5f0c-2b1d-4f7e-8c6a-1d2e3f4a5b6c",
                    "username": "alice",
                    "email": "alice@example.com",
                    "full_name": "Alice Martin",
                    "department_id": None,
                    "role_ids": ["5d0c1c3e-8f57-4b0e-9d7e-0f3f8d7f4a21"],
                    "roles": [
                        {"id": "5d0c1c3e-8f57-4b0e-9d7e-0f3f8d7f4a21", "name": "signer"}
                    ],
                    "status": "active",
                    "must_change_password": False,
                    "two_factor_enabled": False,
                    "last_login_at": "2026-11-23T10:02:11Z",
                    "password_changed_at": "2026-11-23T09:30:00Z",
                    "created_at": "2026-11-23T09:30:00Z",
                    "updated_at": "2026-11-23T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    username: str
    email: str | None
    full_name: str
    department_id: uuid.UUID | None
    role_ids: list[uuid.UUID]
    roles: list[RoleRef]
    status: UserStatus
    must_change_password: bool
    two_factor_enabled: bool
    last_login_at: datetime | None
    password_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TemporaryPassword(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"temporary_password": "q7-K…"}]}
    )

    temporary_password: str = Field(
        description="Shown once; the user must change it at next login."
    )
