"""The certificate vault: import, metadata, assignment, lifecycle."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from cryptography import x509
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, selectinload

from app.access import departments
from app.access import service as access_service
from app.access.entitlements import Entitlement
from app.access.errors import DepartmentOutOfScope
from app.access.models import Department, User
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import Actor, Outcome
from app.auth.clients import get_client, visible_clients
from app.auth.models import ApiClient
from app.certificates import keystores
from app.certificates.errors import (
    AssignmentNotFound,
    CertificateDeleted,
    CertificateDisabled,
    CertificateExpired,
    CertificateNotAssigned,
    CertificateNotFound,
    CertificateNotYetValid,
    CertificateOtherDepartment,
    CertificateRevoked,
    DefaultNotAssigned,
    DuplicateAssignment,
    DuplicateCertificate,
    ImportRefused,
    Pkcs12TooLarge,
    UserNotFound,
)
from app.certificates.models import (
    CertificateAssignment,
    CertificateStatus,
    ClientDefaultCertificate,
    DefaultCertificate,
    KeyStore,
    SigningCertificate,
    StoredStatus,
    VaultState,
)
from app.certificates.parsing import (
    CertificateDetails,
    certificate_details,
    check_signing_certificate,
    load_certificate,
    load_pkcs12,
    looks_like_pkcs12,
    open_pkcs12,
    to_pem,
)
from app.core.crypto import EnvelopeCipher, destroy_sealed
from app.core.errors import InvalidInput
from app.core.pagination import PageParams, paginate
from app.core.types import utcnow
from app.license import service as license_service
from app.license.service import Capacity, Feature

KEY_PURPOSE = "signing-key"

SORTABLE = {
    "created_at": SigningCertificate.created_at,
    "name": SigningCertificate.name,
    "not_after": SigningCertificate.not_after,
    "not_before": SigningCertificate.not_before,
    "subject": SigningCertificate.subject,
    "last_used_at": SigningCertificate.last_used_at,
}


# -- reading ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignee:
    """Who may hold a certificate: a user or an API client, with the department it signs for."""

    kind: Literal["user", "client"]
    id: uuid.UUID
    department_id: uuid.UUID | None

    @classmethod
    def of(cls, principal: Principal) -> "Assignee":
        # A client's department counts only while its owner reaches it (auth.service.client_standing).
        return cls(principal.kind, principal.id, principal.department_id)

    @property
    def own_column(self) -> Any:
        return (
            CertificateAssignment.client_id
            if self.kind == "client"
            else CertificateAssignment.user_id
        )

    def holds(self, assignment: CertificateAssignment) -> bool:
        own = assignment.client_id if self.kind == "client" else assignment.user_id
        return own == self.id or (
            self.department_id is not None
            and assignment.department_id == self.department_id
        )


def _sees_everything(principal: Principal) -> bool:
    return principal.has(Entitlement.CERTIFICATES_WRITE) or principal.has(
        Entitlement.CERTIFICATES_ASSIGN
    )


def _assigned_to(principal: Principal) -> ColumnElement[bool]:
    assignee = Assignee.of(principal)
    who = [assignee.own_column == assignee.id]
    if assignee.department_id is not None:
        who.append(CertificateAssignment.department_id == assignee.department_id)
    return exists().where(
        CertificateAssignment.certificate_id == SigningCertificate.id, or_(*who)
    )


def visible(statement: Select[Any], principal: Principal) -> Select[Any]:
    """Vault managers see every certificate; others only those assigned to them or their department."""
    if _sees_everything(principal):
        return statement
    return statement.where(_assigned_to(principal))


def _status_clause(status: CertificateStatus) -> ColumnElement[bool]:
    now = utcnow()
    live = SigningCertificate.stored_status.in_(
        [StoredStatus.ACTIVE, StoredStatus.DISABLED]
    )
    if status is CertificateStatus.EXPIRED:
        return and_(live, SigningCertificate.not_after <= now)
    if status in (CertificateStatus.ACTIVE, CertificateStatus.DISABLED):
        return and_(
            SigningCertificate.stored_status == StoredStatus(status.value),
            SigningCertificate.not_after > now,
        )
    return SigningCertificate.stored_status == StoredStatus(status.value)


def _with_assignments(statement: Select[Any]) -> Select[Any]:
    return statement.options(selectinload(SigningCertificate.assignments))


def list_certificates(
    session: Session,
    principal: Principal,
    *,
    params: PageParams,
    status: Sequence[CertificateStatus] = (),
    expiring_within_days: int | None = None,
    assigned_to_user: uuid.UUID | None = None,
    assigned_to_client: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    q: str | None = None,
) -> tuple[Sequence[SigningCertificate], int]:
    """Certificates the principal may see; deleted ones only when asked for by status."""
    statement = visible(_with_assignments(select(SigningCertificate)), principal)
    if status:
        statement = statement.where(or_(*(_status_clause(s) for s in status)))
    else:
        statement = statement.where(
            SigningCertificate.stored_status != StoredStatus.DELETED
        )
    if expiring_within_days is not None:
        now = utcnow()
        statement = statement.where(
            SigningCertificate.not_after > now,
            SigningCertificate.not_after <= now + timedelta(days=expiring_within_days),
        )
    for column, value in (
        (CertificateAssignment.user_id, assigned_to_user),
        (CertificateAssignment.client_id, assigned_to_client),
        (CertificateAssignment.department_id, department_id),
    ):
        if value is not None:
            statement = statement.where(
                exists().where(
                    CertificateAssignment.certificate_id == SigningCertificate.id,
                    column == value,
                )
            )
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(
            or_(
                *(
                    column.ilike(pattern)
                    for column in (
                        SigningCertificate.name,
                        SigningCertificate.subject,
                        SigningCertificate.issuer,
                        SigningCertificate.serial_number,
                        SigningCertificate.fingerprint_sha256,
                    )
                )
            )
        )
    return paginate(
        session,
        statement,
        params,
        sortable=SORTABLE,
        tiebreaker=SigningCertificate.id,
    )


def expiring_certificates(
    session: Session, principal: Principal, *, days: int
) -> Sequence[SigningCertificate]:
    """Active or disabled certificates whose validity ends within `days`, soonest first."""
    now = utcnow()
    statement = visible(_with_assignments(select(SigningCertificate)), principal).where(
        SigningCertificate.stored_status.in_(
            [StoredStatus.ACTIVE, StoredStatus.DISABLED]
        ),
        SigningCertificate.not_after > now,
        SigningCertificate.not_after <= now + timedelta(days=days),
    )
    return session.scalars(
        statement.order_by(SigningCertificate.not_after, SigningCertificate.id)
    ).all()


def get_certificate(
    session: Session, principal: Principal, certificate_id: uuid.UUID
) -> SigningCertificate:
    """Raises: CertificateNotFound (also for one the principal may not see)."""
    certificate: SigningCertificate | None = session.scalars(
        visible(_with_assignments(select(SigningCertificate)), principal).where(
            SigningCertificate.id == certificate_id
        )
    ).one_or_none()
    if certificate is None:
        raise CertificateNotFound(f"No certificate {certificate_id}.")
    return certificate


def department_has_certificates(session: Session, department_id: uuid.UUID) -> bool:
    """Whether certificates are still assigned to the department (its delete is then refused)."""
    return (
        session.scalar(
            select(CertificateAssignment.id)
            .where(CertificateAssignment.department_id == department_id)
            .limit(1)
        )
        is not None
    )


def chain_pem(certificate: SigningCertificate) -> str:
    """The certificate and its chain as PEM; never key material."""
    leaf = x509.load_der_x509_certificate(certificate.certificate_der)
    return to_pem(leaf) + certificate.chain_pem


# -- import ------------------------------------------------------------------


def import_pkcs12(
    session: Session,
    principal: Principal,
    *,
    cipher: EnvelopeCipher,
    name: str | None,
    data: bytes,
    password: str,
    max_bytes: int,
    max_iterations: int,
) -> SigningCertificate:
    """Import a PKCS#12 file: the key is re-sealed under the vault's own data key.

    Neither the file nor its password is stored.

    Raises:
        ImportRefused: the file is refused (a subclass per reason).
        DuplicateCertificate: the certificate is in the vault already.
    """
    try:
        contents = load_pkcs12(
            data, password, max_bytes=max_bytes, max_iterations=max_iterations
        )
    except ImportRefused as refusal:
        _record_refusal(session, principal, name=name, refusal=refusal)
        raise
    details = certificate_details(contents.certificate, contents.chain)
    certificate = _add_certificate(
        session, principal, details, name=name, key_store=KeyStore.PKCS12
    )
    certificate.sealed_private_key = cipher.seal(
        session, contents.private_key_pkcs8(), purpose=KEY_PURPOSE
    )
    session.flush()
    _record(
        session,
        principal.actor,
        "certificate.imported",
        certificate,
        key_store=KeyStore.PKCS12.value,
    )
    return certificate


def register_pkcs11(
    session: Session,
    principal: Principal,
    *,
    location: keystores.Pkcs11Location,
    name: str | None,
    certificate_data: bytes | None,
) -> SigningCertificate:
    """Register a key held in a PKCS#11 token, after proving the key signs for the certificate.

    Raises:
        Pkcs11ObjectNotFound: no such token, key or certificate.
        ImportRefused: the certificate is refused, or the key does not match it.
        DuplicateCertificate: the certificate is in the vault already.
        LicenseRefusal: the licence lacks the `pkcs11` feature.
    """
    license_service.require_feature(session, Feature.PKCS11, actor=principal.actor)
    try:
        leaf = _token_certificate(location, certificate_data)
    except ImportRefused as refusal:
        _record_refusal(session, principal, name=name, refusal=refusal)
        raise
    certificate = _add_certificate(
        session,
        principal,
        certificate_details(leaf, []),
        name=name,
        key_store=KeyStore.PKCS11,
    )
    certificate.pkcs11_token_label = location.token_label
    certificate.pkcs11_key_label = location.key_label
    certificate.pkcs11_cert_label = location.cert_label
    session.flush()
    _record(
        session,
        principal.actor,
        "certificate.imported",
        certificate,
        key_store=KeyStore.PKCS11.value,
        token_label=location.token_label,
        key_label=location.key_label,
    )
    return certificate


def _token_certificate(
    location: keystores.Pkcs11Location, certificate_data: bytes | None
) -> x509.Certificate:
    """The certificate for the token's key, after a probe signature proved they match."""
    token = keystores.open_token(location)
    try:
        if certificate_data is not None:
            leaf = load_certificate(certificate_data)
        else:
            leaf = load_certificate(
                keystores.token_certificate(
                    token, location.cert_label or location.key_label
                )
            )
        check_signing_certificate(leaf)
        keystores.check_token_key(token, key_label=location.key_label, certificate=leaf)
    finally:
        token.close()
    return leaf


def _add_certificate(
    session: Session,
    principal: Principal,
    details: CertificateDetails,
    *,
    name: str | None,
    key_store: KeyStore,
) -> SigningCertificate:
    """The one way a certificate enters the vault (PKCS#12 import and HSM registration).

    Raises:
        DuplicateCertificate: the certificate is in the vault already.
        LicenseRefusal: the licence's certificate limit is reached.
    """
    _refuse_duplicate(session, principal, details)
    license_service.check_capacity(
        session, Capacity.CERTIFICATES, actor=principal.actor
    )
    certificate = SigningCertificate(
        name=name or details.subject_cn or details.subject,
        key_store=key_store,
        stored_status=StoredStatus.ACTIVE,
        subject=details.subject,
        subject_cn=details.subject_cn,
        subject_o=details.subject_o,
        subject_email=details.subject_email,
        issuer=details.issuer,
        serial_number=details.serial_number,
        not_before=details.not_before,
        not_after=details.not_after,
        fingerprint_sha256=details.fingerprint_sha256,
        key_algorithm=details.key_algorithm,
        key_size=details.key_size,
        key_curve=details.key_curve,
        key_usage=details.key_usage,
        extended_key_usage=details.extended_key_usage,
        certificate_der=details.certificate_der,
        chain_pem=details.chain_pem,
        assignments=[],
    )
    session.add(certificate)
    session.flush()
    return certificate


def _refuse_duplicate(
    session: Session, principal: Principal, details: CertificateDetails
) -> None:
    existing = session.scalars(
        select(SigningCertificate.id).where(
            SigningCertificate.fingerprint_sha256 == details.fingerprint_sha256,
            SigningCertificate.stored_status != StoredStatus.DELETED,
        )
    ).first()
    if existing is None:
        return
    audit_service.record_isolated(
        session,
        actor=principal.actor,
        action="certificate.import_refused",
        resource_type="certificate",
        resource_id=existing,
        details={
            "code": DuplicateCertificate.code,
            "fingerprint_sha256": details.fingerprint_sha256,
        },
    )
    raise DuplicateCertificate(
        f"This certificate is in the vault already as {existing}.",
        extra={"existing_id": str(existing)},
    )


def _record_refusal(
    session: Session, principal: Principal, *, name: str | None, refusal: ImportRefused
) -> None:
    audit_service.record_isolated(
        session,
        actor=principal.actor,
        action="certificate.import_refused",
        resource_type="certificate",
        details={"code": refusal.code, "reason": refusal.detail, "name": name},
    )


@dataclass(frozen=True)
class Inspection:
    details: CertificateDetails
    chain: list[x509.Certificate]
    has_private_key: bool
    refusal: ImportRefused | None


def inspect(
    data: bytes, password: str | None, *, max_bytes: int, max_iterations: int
) -> Inspection:
    """Read a PKCS#12 file or a certificate (PEM/DER) and judge it; stores nothing.

    Raises:
        ImportRefused: the data cannot be read at all (size, format, password, pairing).
    """
    if len(data) > max_bytes:
        raise Pkcs12TooLarge(
            f"The file has {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    if looks_like_pkcs12(data):
        contents = open_pkcs12(
            data,
            password or "",
            max_bytes=max_bytes,
            max_iterations=max_iterations,
        )
        leaf, chain, has_key = contents.certificate, contents.chain, True
    else:
        leaf, chain, has_key = load_certificate(data), [], False
    details = certificate_details(leaf, chain)
    try:
        check_signing_certificate(leaf)
    except ImportRefused as refusal:
        return Inspection(details, chain, has_key, refusal)
    return Inspection(details, chain, has_key, None)


# -- changes ---------------------------------------------------------------


def rename_certificate(
    session: Session,
    principal: Principal,
    *,
    certificate: SigningCertificate,
    name: str,
) -> SigningCertificate:
    previous = certificate.name
    certificate.name = name
    session.flush()
    _record(
        session,
        principal.actor,
        "certificate.updated",
        certificate,
        previous_name=previous,
    )
    return certificate


def _refuse_final(certificate: SigningCertificate) -> None:
    if certificate.stored_status is StoredStatus.DELETED:
        raise CertificateDeleted("The certificate was deleted; it cannot change.")
    if certificate.stored_status is StoredStatus.REVOKED:
        raise CertificateRevoked("The certificate is revoked; revocation is final.")


def disable_certificate(
    session: Session, principal: Principal, *, certificate: SigningCertificate
) -> SigningCertificate:
    """Raises: CertificateRevoked, CertificateDeleted."""
    _refuse_final(certificate)
    if certificate.stored_status is not StoredStatus.DISABLED:
        certificate.stored_status = StoredStatus.DISABLED
        certificate.disabled_at = utcnow()
        invalidate_signers(session)
        _record(session, principal.actor, "certificate.disabled", certificate)
    return certificate


def enable_certificate(
    session: Session, principal: Principal, *, certificate: SigningCertificate
) -> SigningCertificate:
    """Raises: CertificateRevoked, CertificateDeleted."""
    _refuse_final(certificate)
    if certificate.stored_status is not StoredStatus.ACTIVE:
        certificate.stored_status = StoredStatus.ACTIVE
        certificate.disabled_at = None
        _record(session, principal.actor, "certificate.enabled", certificate)
    return certificate


def revoke_certificate(
    session: Session,
    principal: Principal,
    *,
    certificate: SigningCertificate,
    reason: str | None,
) -> SigningCertificate:
    """Revoke for good: it never signs again.

    Raises: CertificateRevoked (already), CertificateDeleted.
    """
    _refuse_final(certificate)
    certificate.stored_status = StoredStatus.REVOKED
    certificate.revoked_at = utcnow()
    certificate.revocation_reason = reason
    invalidate_signers(session)
    _record(session, principal.actor, "certificate.revoked", certificate, reason=reason)
    return certificate


def delete_certificate(
    session: Session,
    principal: Principal,
    *,
    certificate: SigningCertificate,
) -> None:
    """Destroy the key material and the assignments; the metadata stays, status `deleted`.

    Signatures made with the certificate keep naming it, so nothing that
    references it breaks; the key can never be opened again (its data key is
    deleted, which needs no master key).

    Raises: CertificateDeleted (already).
    """
    if certificate.stored_status is StoredStatus.DELETED:
        raise CertificateDeleted("The certificate was deleted already.")
    if certificate.sealed_private_key is not None:
        destroy_sealed(session, certificate.sealed_private_key)
        certificate.sealed_private_key = None
    certificate.assignments.clear()
    session.execute(
        delete(DefaultCertificate).where(
            DefaultCertificate.certificate_id == certificate.id
        )
    )
    certificate.stored_status = StoredStatus.DELETED
    certificate.deleted_at = utcnow()
    invalidate_signers(session)
    _record(
        session, principal.actor, "certificate.deleted", certificate, key_destroyed=True
    )


def add_assignment(
    session: Session,
    principal: Principal,
    *,
    certificate: SigningCertificate,
    user_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
) -> CertificateAssignment:
    """Raises: InvalidInput (not exactly one assignee, or unknown), DuplicateAssignment, CertificateDeleted."""
    named = {
        field: value
        for field, value in (
            ("user_id", user_id),
            ("client_id", client_id),
            ("department_id", department_id),
        )
        if value is not None
    }
    if len(named) != 1:
        raise InvalidInput(
            "Give exactly one of user_id, client_id and department_id.",
            invalid_params=[
                {"name": "user_id", "in": "body", "reason": "exactly one assignee"}
            ],
        )
    if certificate.stored_status is StoredStatus.DELETED:
        raise CertificateDeleted("A deleted certificate cannot be assigned.")
    [(field, target_id)] = named.items()
    if _assignee_id_in_reach(session, principal, field, target_id) is None:
        # Users and clients the principal may not manage answer as missing ones do.
        raise InvalidInput(
            f"No {ASSIGNEE_NOUNS[field]} {target_id}.",
            invalid_params=[{"name": field, "in": "body", "reason": "does not exist"}],
        )
    if department_id is not None:
        _check_department_in_reach(principal, department_id)
    _check_held_within_department(session, principal, certificate)
    for current in certificate.assignments:
        if (current.user_id, current.client_id, current.department_id) == (
            user_id,
            client_id,
            department_id,
        ):
            raise DuplicateAssignment(
                "The certificate is assigned there already.",
                extra={"existing_id": str(current.id)},
            )
    assignment = CertificateAssignment(
        certificate=certificate,
        user_id=user_id,
        client_id=client_id,
        department_id=department_id,
    )
    session.add(assignment)
    session.flush()
    _record(
        session,
        principal.actor,
        "certificate.assigned",
        certificate,
        assignment_id=str(assignment.id),
        **_assignee_details(assignment),
    )
    return assignment


ASSIGNEE_NOUNS = {
    "user_id": "user",
    "client_id": "API client",
    "department_id": "department",
}


def _assignee_id_in_reach(
    session: Session, principal: Principal, field: str, target_id: uuid.UUID
) -> uuid.UUID | None:
    """The assignee's id if it exists and, for a user or client, the principal may manage it."""
    statement: Select[Any]
    if field == "user_id":
        statement = access_service.visible_users(select(User.id), principal).where(
            User.id == target_id
        )
    elif field == "client_id":
        statement = visible_clients(select(ApiClient.id), principal).where(
            ApiClient.id == target_id
        )
    else:
        statement = select(Department.id).where(Department.id == target_id)
    found: uuid.UUID | None = session.scalar(statement)
    return found


def _assignee_details(assignment: CertificateAssignment) -> dict[str, str | None]:
    return {
        field: str(value) if value else None
        for field, value in (
            ("user_id", assignment.user_id),
            ("client_id", assignment.client_id),
            ("department_id", assignment.department_id),
        )
    }


def remove_assignment(
    session: Session,
    principal: Principal,
    *,
    certificate: SigningCertificate,
    assignment_id: uuid.UUID,
) -> None:
    """Raises: AssignmentNotFound, DepartmentOutOfScope (a non-administrator, outside its department)."""
    for assignment in certificate.assignments:
        if assignment.id == assignment_id:
            _check_assignment_in_reach(session, principal, assignment)
            certificate.assignments.remove(assignment)
            session.flush()
            _record(
                session,
                principal.actor,
                "certificate.unassigned",
                certificate,
                assignment_id=str(assignment_id),
                **_assignee_details(assignment),
            )
            return
    raise AssignmentNotFound(f"No assignment {assignment_id} on this certificate.")


def _check_department_in_reach(principal: Principal, department_id: uuid.UUID) -> None:
    if not principal.is_administrator and department_id != principal.department_id:
        raise DepartmentOutOfScope(
            "You assign certificates only within your own department."
        )


def _check_assignment_in_reach(
    session: Session, principal: Principal, assignment: CertificateAssignment
) -> None:
    """A non-administrator's assignment rights end at its department's users and itself.

    Raises:
        DepartmentOutOfScope
    """
    if principal.is_administrator:
        return
    if assignment.department_id is not None:
        _check_department_in_reach(principal, assignment.department_id)
        return
    if assignment.client_id is not None:
        field, target_id = "client_id", assignment.client_id
    elif assignment.user_id is not None:
        field, target_id = "user_id", assignment.user_id
    else:
        return
    if _assignee_id_in_reach(session, principal, field, target_id) is None:
        raise DepartmentOutOfScope(
            f"The certificate is assigned to {'an API client' if assignment.client_id else 'a user'} outside your department."
        )


def _check_held_within_department(
    session: Session, principal: Principal, certificate: SigningCertificate
) -> None:
    """A non-administrator hands on only a certificate that no other department holds.

    Otherwise a manager could give its own department another department's seal.

    Raises:
        DepartmentOutOfScope
    """
    for assignment in certificate.assignments:
        _check_assignment_in_reach(session, principal, assignment)


# -- default certificate ---------------------------------------------------


def set_default_certificate(
    session: Session,
    principal: Principal,
    *,
    user_id: uuid.UUID,
    certificate_id: uuid.UUID,
) -> DefaultCertificate:
    """Make a certificate the user's default for sign requests that name none.

    Raises:
        UserNotFound, CertificateNotFound.
        CertificateDeleted, CertificateRevoked: it can never sign again.
        DefaultNotAssigned: it is not assigned to the user or the user's department.
    """
    user = session.scalars(
        access_service.visible_users(select(User), principal).where(User.id == user_id)
    ).one_or_none()
    if user is None:
        raise UserNotFound(f"No user {user_id}.")
    _default_candidate(
        session,
        principal,
        Assignee("user", user.id, user.department_id),
        certificate_id,
    )
    current = session.get(DefaultCertificate, user_id)
    if current is None:
        current = DefaultCertificate(user_id=user_id, certificate_id=certificate_id)
        session.add(current)
    else:
        current.certificate_id = certificate_id
    session.flush()
    return current


def set_client_default_certificate(
    session: Session,
    principal: Principal,
    *,
    client_id: uuid.UUID,
    certificate_id: uuid.UUID,
) -> ClientDefaultCertificate:
    """Make a certificate an API client's default for sign requests that name none.

    Raises:
        ClientNotFound, CertificateNotFound.
        CertificateDeleted, CertificateRevoked: it can never sign again.
        DefaultNotAssigned: it is not assigned to the client or the client's department.
    """
    client = get_client(session, principal, client_id)
    _default_candidate(
        session,
        principal,
        Assignee("client", client.id, client.department_id),
        certificate_id,
    )
    current = session.get(ClientDefaultCertificate, client_id)
    if current is None:
        current = ClientDefaultCertificate(
            client_id=client_id, certificate_id=certificate_id
        )
        session.add(current)
    else:
        current.certificate_id = certificate_id
    session.flush()
    return current


def _default_candidate(
    session: Session,
    principal: Principal,
    holder: Assignee,
    certificate_id: uuid.UUID,
) -> None:
    """Check that the certificate may become the holder's default, and audit it.

    Raises:
        CertificateNotFound, CertificateDeleted, CertificateRevoked, DefaultNotAssigned.
    """
    certificate = get_certificate(session, principal, certificate_id)
    _refuse_final(certificate)
    if not any(holder.holds(a) for a in certificate.assignments):
        noun = "API client" if holder.kind == "client" else "user"
        raise DefaultNotAssigned(
            f"Assign the certificate to the {noun} (or the {noun}'s department) first."
        )
    _record(
        session,
        principal.actor,
        "certificate.default_set",
        certificate,
        **{f"{holder.kind}_id": str(holder.id)},
    )


def default_certificate_id(session: Session, principal: Principal) -> uuid.UUID | None:
    """The principal's default certificate, if one is set (whether it may sign is checked at use)."""
    if principal.kind == "client":
        return session.scalar(
            select(ClientDefaultCertificate.certificate_id).where(
                ClientDefaultCertificate.client_id == principal.id
            )
        )
    return session.scalar(
        select(DefaultCertificate.certificate_id).where(
            DefaultCertificate.user_id == principal.id
        )
    )


def get_default_certificate(
    session: Session, principal: Principal, *, user_id: uuid.UUID
) -> DefaultCertificate:
    """Raises: NotFound (no user, or no default set the principal may see)."""
    if session.get(User, user_id) is None:
        raise UserNotFound(f"No user {user_id}.")
    current = session.get(DefaultCertificate, user_id)
    if current is None or not _sees_default(session, principal, current.certificate_id):
        # A default the principal may not see is answered as no default at all.
        raise CertificateNotFound("The user has no default certificate.")
    return current


def get_client_default_certificate(
    session: Session, principal: Principal, *, client_id: uuid.UUID
) -> ClientDefaultCertificate:
    """Raises: NotFound (no client the principal may see, or no default set it may see)."""
    get_client(session, principal, client_id)
    current = session.get(ClientDefaultCertificate, client_id)
    if current is None or not _sees_default(session, principal, current.certificate_id):
        raise CertificateNotFound("The API client has no default certificate.")
    return current


def _sees_default(
    session: Session, principal: Principal, certificate_id: uuid.UUID
) -> bool:
    return (
        session.scalar(
            visible(select(SigningCertificate.id), principal).where(
                SigningCertificate.id == certificate_id
            )
        )
        is not None
    )


def clear_default_certificate(
    session: Session, principal: Principal, *, user_id: uuid.UUID
) -> None:
    """Raises: NotFound (no user the principal may manage, or no default set)."""
    if (
        session.scalar(
            access_service.visible_users(select(User.id), principal).where(
                User.id == user_id
            )
        )
        is None
    ):
        raise UserNotFound(f"No user {user_id}.")
    current = get_default_certificate(session, principal, user_id=user_id)
    _clear_default(session, principal, current, "user", user_id)


def clear_client_default_certificate(
    session: Session, principal: Principal, *, client_id: uuid.UUID
) -> None:
    """Raises: NotFound (no client the principal may see, or no default set)."""
    current = get_client_default_certificate(session, principal, client_id=client_id)
    _clear_default(session, principal, current, "api_client", client_id)


def _clear_default(
    session: Session,
    principal: Principal,
    current: DefaultCertificate | ClientDefaultCertificate,
    resource_type: str,
    holder_id: uuid.UUID,
) -> None:
    session.delete(current)
    audit_service.record(
        session,
        actor=principal.actor,
        action="certificate.default_cleared",
        resource_type=resource_type,
        resource_id=holder_id,
        details={"certificate_id": str(current.certificate_id)},
    )


# -- use -------------------------------------------------------------------


def check_may_sign(
    session: Session, principal: Principal, certificate: SigningCertificate
) -> None:
    """Whether the principal may sign with the certificate now.

    Raises:
        CertificateNotFound: not theirs, and not a vault manager's: they may not
            see it, so it answers as a missing one does.
        CertificateNotAssigned, CertificateOtherDepartment: a vault manager's,
            not assigned to them (403).
        CertificateDeleted, CertificateRevoked, CertificateDisabled: its state (409).
        CertificateExpired, CertificateNotYetValid: its dates (422).
    """
    assignee = Assignee.of(principal)
    assignments = session.scalars(
        select(CertificateAssignment).where(
            CertificateAssignment.certificate_id == certificate.id
        )
    ).all()
    mine = any(assignee.holds(a) for a in assignments)
    if not mine:
        if not _sees_everything(principal):
            raise CertificateNotFound(f"No certificate {certificate.id}.")
        if any(a.department_id is not None for a in assignments):
            raise CertificateOtherDepartment(
                "The certificate is assigned to another department."
            )
        raise CertificateNotAssigned(
            "The certificate is not assigned to you or your department."
        )
    status = certificate.status
    if status is CertificateStatus.DELETED:
        raise CertificateDeleted("The certificate was deleted.")
    if status is CertificateStatus.REVOKED:
        raise CertificateRevoked("The certificate is revoked.")
    if certificate.stored_status is StoredStatus.DISABLED:
        raise CertificateDisabled("The certificate is disabled.")
    if status is CertificateStatus.EXPIRED:
        raise CertificateExpired(
            f"The certificate expired on {certificate.not_after.isoformat()}."
        )
    if certificate.not_before > utcnow():
        raise CertificateNotYetValid(
            f"The certificate is valid only from {certificate.not_before.isoformat()}."
        )


KEY_USE_RESOLUTION = timedelta(minutes=1)


def record_key_use(
    session: Session,
    actor: Actor,
    *,
    certificate: SigningCertificate,
    details: dict[str, Any] | None = None,
) -> None:
    """Note that the certificate's key signed something: `last_used_at` and an audit entry.

    Every use is in the audit log; `last_used_at` is kept to the minute, so a
    busy certificate's row is not written (and, on PostgreSQL, locked until the
    signer commits) by every signature. When the minute turns, every concurrent
    signer finds it stale: one writes it, and the others, finding the row locked,
    leave it to that one rather than queue behind its commit.
    """
    now = utcnow()
    if (
        certificate.last_used_at is None
        or now - certificate.last_used_at >= KEY_USE_RESOLUTION
    ):
        session.execute(
            _TOUCH_LAST_USED,
            {
                "certificate_id": certificate.id,
                "now": now,
                "stale": now - KEY_USE_RESOLUTION,
            },
        )
    _record(session, actor, "certificate.key_used", certificate, **(details or {}))


_UNWRITTEN_SINCE = (
    select(SigningCertificate.id)
    .where(
        SigningCertificate.id == bindparam("certificate_id"),
        SigningCertificate.last_used_at.is_(None)
        | (SigningCertificate.last_used_at <= bindparam("stale")),
    )
    .with_for_update(skip_locked=True)
)
_TOUCH_LAST_USED = (
    update(SigningCertificate)
    .where(SigningCertificate.id.in_(_UNWRITTEN_SINCE))
    .values(last_used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def record_key_refused(
    session: Session, actor: Actor, *, certificate_id: uuid.UUID, code: str
) -> None:
    audit_service.record_isolated(
        session,
        actor=actor,
        action="certificate.key_use_refused",
        resource_type="certificate",
        resource_id=certificate_id,
        outcome=Outcome.DENIED,
        details={"code": code},
    )


def invalidate_signers(session: Session) -> None:
    """Make every process drop its cached signers (at this transaction's commit)."""
    session.execute(
        update(VaultState)
        .where(VaultState.id == 1)
        .values(version=VaultState.version + 1)
    )


def _record(
    session: Session,
    actor: Actor,
    action: str,
    certificate: SigningCertificate,
    **details: Any,
) -> None:
    audit_service.record(
        session,
        actor=actor,
        action=action,
        resource_type="certificate",
        resource_id=certificate.id,
        details={
            "fingerprint_sha256": certificate.fingerprint_sha256,
            "name": certificate.name,
            **details,
        },
    )


def count_licensed_certificates(session: Session) -> int:
    """Certificates that hold a licence seat: all but revoked and deleted ones."""
    return (
        session.scalar(
            select(func.count())
            .select_from(SigningCertificate)
            .where(
                SigningCertificate.stored_status.not_in(
                    [StoredStatus.REVOKED, StoredStatus.DELETED]
                )
            )
        )
        or 0
    )


license_service.register_capacity_counter(
    Capacity.CERTIFICATES, count_licensed_certificates
)
departments.register_reference(
    "certificate_assignments", CertificateAssignment.department_id
)
