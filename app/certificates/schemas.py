import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, SecretStr, model_validator

from app.certificates.models import CertificateStatus, KeyStore
from app.core.schemas import RequestSchema, Schema, SecretBase64


class Pkcs12Import(RequestSchema):
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Display name; default: the subject's CN.",
    )
    pkcs12_base64: SecretBase64 = Field(description="The .p12/.pfx file, base64.")
    password: SecretStr = Field(description="The file's password (not stored).")

    model_config = RequestSchema.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Jane Doe (qualified)",
                    "pkcs12_base64": "MIIKCQIBAzCCCc8GCSqGSIb3DQEHAaCCCcAE…",
                    "password": "file-password",
                }
            ]
        }
    }


class Pkcs11Register(RequestSchema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    token_label: str = Field(min_length=1, max_length=200)
    key_label: str = Field(min_length=1, max_length=200)
    cert_label: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Label of the certificate object in the token; default: the key label.",
    )
    certificate_pem: str | None = Field(
        default=None,
        description="The certificate, when the token does not hold it.",
    )

    model_config = RequestSchema.model_config | {
        "json_schema_extra": {
            "examples": [
                {"name": "HSM seal", "token_label": "signing", "key_label": "seal-2026"}
            ]
        }
    }


class CertificateUpdate(RequestSchema):
    name: str = Field(min_length=1, max_length=200)


class CertificateRevoke(RequestSchema):
    reason: str | None = Field(default=None, max_length=400)


class AssignmentCreate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"},
                {"client_id": "0b7e4a52-3c1d-4f6e-9a8b-7c6d5e4f3a2b"},
            ]
        }
    )

    user_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = Field(
        default=None, description="An API client (its `id`, not its `client_id`)."
    )
    department_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def one_assignee(self) -> "AssignmentCreate":
        given = [self.user_id, self.client_id, self.department_id]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of user_id, client_id and department_id")
        return self


class AssignmentRead(Schema):
    id: uuid.UUID
    user_id: uuid.UUID | None
    client_id: uuid.UUID | None
    department_id: uuid.UUID | None
    created_at: datetime


class ChainCertificate(Schema):
    subject: str
    issuer: str
    not_after: datetime
    fingerprint_sha256: str


class CertificateRead(Schema):
    id: uuid.UUID
    name: str
    key_store: KeyStore
    status: CertificateStatus
    subject: str
    subject_cn: str | None
    subject_o: str | None
    subject_email: str | None
    issuer: str
    serial_number: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    key_algorithm: str
    key_size: int
    key_curve: str | None
    key_usage: list[str]
    extended_key_usage: list[str]
    chain: list[ChainCertificate]
    assignments: list[AssignmentRead]
    pkcs11_token_label: str | None
    pkcs11_key_label: str | None
    last_used_at: datetime | None = Field(
        description="When the key last signed, to the minute (each use is in the audit log)."
    )
    disabled_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CertificateInspection(Schema):
    """What a PKCS#12 file or certificate holds, and whether the vault would import it."""

    subject: str
    subject_cn: str | None
    subject_o: str | None
    subject_email: str | None
    issuer: str
    serial_number: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    key_algorithm: str
    key_size: int
    key_curve: str | None
    key_usage: list[str]
    extended_key_usage: list[str]
    chain: list[ChainCertificate]
    has_private_key: bool
    importable: bool
    refusal_code: str | None
    refusal_detail: str | None


class InspectBase64(RequestSchema):
    data_base64: SecretBase64 = Field(
        description="A .p12/.pfx file, or a certificate (PEM or DER), base64."
    )
    password: SecretStr | None = Field(
        default=None, description="The PKCS#12 password (not stored)."
    )


class DefaultCertificateSet(RequestSchema):
    certificate_id: uuid.UUID


class DefaultCertificateRead(Schema):
    user_id: uuid.UUID
    certificate_id: uuid.UUID
    updated_at: datetime


class ClientDefaultCertificateRead(Schema):
    client_id: uuid.UUID = Field(description="The API client's `id`.")
    certificate_id: uuid.UUID
    updated_at: datetime
