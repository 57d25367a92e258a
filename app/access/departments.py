"""Departments, and what must be gone before one can be deleted.

`register_reference("certificates", SigningCertificate.department_id)` lets a
feature declare that its rows point at departments: deleting a department that
any registered reference still counts answers 409 naming what is left.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.access.errors import DepartmentNotFound, NameTaken, StillReferenced
from app.access.models import Department, User
from app.access.principal import Principal
from app.audit import service as audit_service
from app.auth.models import ApiClient
from app.core.pagination import PageParams, paginate
from app.core.types import name_key

SORTABLE = {"created_at": Department.created_at, "name": Department.name}

# label -> a column holding a department id
_REFERENCES: dict[str, InstrumentedAttribute[Any]] = {}


def register_reference(label: str, column: InstrumentedAttribute[Any]) -> None:
    """Declare that rows with `column` = a department's id keep it from being deleted."""
    _REFERENCES[label] = column


register_reference("users", User.department_id)
register_reference("api_clients", ApiClient.department_id)


def remaining_references(session: Session, department_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each registered kind still point at the department (non-zero only)."""
    counts = {}
    for label, column in _REFERENCES.items():
        count = session.scalar(
            select(func.count())
            .select_from(column.class_)
            .where(column == department_id)
        )
        if count:
            counts[label] = count
    return counts


def get_department(session: Session, department_id: uuid.UUID) -> Department:
    """Raises: DepartmentNotFound."""
    department = session.get(Department, department_id)
    if department is None:
        raise DepartmentNotFound(f"No department with id {department_id}.")
    return department


def list_departments(
    session: Session, *, params: PageParams, q: str | None
) -> tuple[Sequence[Department], int]:
    statement: Select[Any] = select(Department)
    if q:
        statement = statement.where(func.lower(Department.name).like(f"%{q.lower()}%"))
    return paginate(
        session, statement, params, sortable=SORTABLE, tiebreaker=Department.id
    )


def _check_name_free(
    session: Session, name: str, *, other_than: uuid.UUID | None = None
) -> None:
    statement = select(Department.id).where(Department.name_key == name_key(name))
    if other_than is not None:
        statement = statement.where(Department.id != other_than)
    if session.scalars(statement).first() is not None:
        raise NameTaken(f"A department named '{name}' exists.")


def create_department(
    session: Session, principal: Principal, *, name: str, description: str
) -> Department:
    """Raises: NameTaken (names are unique, ignoring case)."""
    _check_name_free(session, name)
    department = Department(name=name, description=description)
    session.add(department)
    session.flush()
    _audit(
        session,
        principal,
        "department.created",
        department,
        {"name": name, "description": description},
    )
    return department


def update_department(
    session: Session,
    principal: Principal,
    *,
    department: Department,
    changes: dict[str, Any],
) -> Department:
    """Raises: NameTaken."""
    if changes.get("name"):
        _check_name_free(session, changes["name"], other_than=department.id)
    before = {field: getattr(department, field) for field in changes}
    for field, value in changes.items():
        if value is not None:
            setattr(department, field, value)
    session.flush()
    after = {field: getattr(department, field) for field in changes}
    changed = [field for field in changes if before[field] != after[field]]
    _audit(
        session,
        principal,
        "department.updated",
        department,
        {
            "before": {f: before[f] for f in changed},
            "after": {f: after[f] for f in changed},
        },
    )
    return department


def delete_department(
    session: Session, principal: Principal, *, department: Department
) -> None:
    """Raises: StillReferenced naming the users, clients, certificates… still in it."""
    remaining = remaining_references(session, department.id)
    if remaining:
        listed = ", ".join(f"{count} {label}" for label, count in remaining.items())
        raise StillReferenced(
            f"The department still has {listed}; move or delete them first.",
            extra={"remaining": remaining},
        )
    _audit(
        session, principal, "department.deleted", department, {"name": department.name}
    )
    session.delete(department)
    session.flush()


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    department: Department,
    details: dict[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="department",
        resource_id=department.id,
        details=details,
    )
