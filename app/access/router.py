import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from app.access import departments as departments_service
from app.access import roles as roles_service
from app.access import service as access_service
from app.access.entitlements import DESCRIPTIONS, Entitlement
from app.access.models import Department, Role, User, UserStatus
from app.access.policy import require
from app.access.principal import Principal
from app.access.schemas import (
    DepartmentCreate,
    DepartmentRead,
    DepartmentUpdate,
    EntitlementRead,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    TemporaryPassword,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.auth import totp as totp_service
from app.core.crypto import EnvelopeCipher
from app.core.deps import PasswordHasherDep, SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.settings import service as settings_service

users_router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=AppRoute)
departments_router = APIRouter(
    prefix="/api/v1/departments", tags=["departments"], route_class=AppRoute
)
roles_router = APIRouter(prefix="/api/v1", tags=["roles"], route_class=AppRoute)

UsersReader = Annotated[Principal, Depends(require(Entitlement.USERS_READ))]
UsersWriter = Annotated[Principal, Depends(require(Entitlement.USERS_WRITE))]
DepartmentsReader = Annotated[Principal, Depends(require(Entitlement.DEPARTMENTS_READ))]
DepartmentsWriter = Annotated[
    Principal, Depends(require(Entitlement.DEPARTMENTS_WRITE))
]
RolesReader = Annotated[Principal, Depends(require(Entitlement.ROLES_READ))]
RolesWriter = Annotated[Principal, Depends(require(Entitlement.ROLES_WRITE))]
Params = Annotated[PageParams, Depends(page_params)]
Search = Annotated[str | None, Query(max_length=200, description="Part of the name.")]


def _load_department(department_id: uuid.UUID, session: SessionDep) -> Department:
    return departments_service.get_department(session, department_id)


def _load_role(role_id: uuid.UUID, session: SessionDep) -> Role:
    return roles_service.get_role(session, role_id)


def _cipher(request: Request) -> EnvelopeCipher | None:
    cipher: EnvelopeCipher | None = request.app.state.cipher
    return cipher


DepartmentDep = Annotated[Department, Depends(_load_department)]
RoleDep = Annotated[Role, Depends(_load_role)]


def _department_or_none(
    session: SessionDep, department_id: uuid.UUID | None
) -> Department | None:
    if department_id is None:
        return None
    return departments_service.get_department(session, department_id)


# --- users ---------------------------------------------------------------------


@users_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def create_user(
    body: UserCreate,
    principal: UsersWriter,
    session: SessionDep,
    hasher: PasswordHasherDep,
) -> User:
    """Create a user with roles (within your own entitlements); the password must meet the policy. A non-administrator creates users only in its own department (the default when `department_id` is omitted)."""
    roles = access_service.roles_by_ids(session, body.role_ids)
    access_service.check_grantable(
        principal,
        {e for role in roles for e in role.entitlements},
        "Cannot assign roles with",
    )
    department_id = (
        body.department_id
        if body.department_id is not None or principal.is_administrator
        else principal.department_id
    )
    access_service.check_department_in_reach(principal, department_id)
    return access_service.create_user(
        session,
        hasher,
        actor=principal.actor,
        username=body.username,
        password=body.password.get_secret_value(),
        roles=roles,
        email=body.email,
        full_name=body.full_name,
        department=_department_or_none(session, department_id),
        policy=settings_service.password_policy(session),
    )


@users_router.get(
    "", response_model=Page[UserRead], responses=problem_responses(401, 403, 422)
)
def list_users(
    principal: UsersReader,
    session: SessionDep,
    params: Params,
    department_id: uuid.UUID | None = None,
    role_id: uuid.UUID | None = None,
    status_filter: Annotated[list[UserStatus], Query(alias="status")] = [],  # noqa: B006 (FastAPI copies defaults)
    q: Annotated[
        str | None,
        Query(max_length=200, description="Part of the username, email or full name."),
    ] = None,
) -> dict[str, object]:
    """List the users you may see: all for an administrator, else your department's (filters `department_id`, `role_id`, `status`, `q`; sortable by created_at, username, email, full_name, last_login_at, status)."""
    rows, total = access_service.list_users(
        session,
        principal,
        params=params,
        department_id=department_id,
        role_id=role_id,
        status=status_filter,
        q=q,
    )
    return page_of(rows, total, params, UserRead)


@users_router.get(
    "/{user_id}", response_model=UserRead, responses=problem_responses(401, 403, 404)
)
def read_user(principal: UsersReader, session: SessionDep, user_id: uuid.UUID) -> User:
    """One user of your department, or any for an administrator (never the password hash or the TOTP seed)."""
    return access_service.get_user(session, principal, user_id)


@users_router.patch(
    "/{user_id}",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def update_user(
    body: UserUpdate, principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> User:
    """Change email, full name, department or roles (`role_ids` replaces the set); never your own roles or department."""
    user = access_service.get_user(session, principal, user_id)
    changes = body.model_dump(exclude_unset=True)
    roles = (
        access_service.roles_by_ids(session, body.role_ids)
        if body.role_ids is not None
        else None
    )
    return access_service.update_user(
        session,
        principal,
        user=user,
        changes=changes,
        roles=roles,
        department=_department_or_none(session, body.department_id),
    )


@users_router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409),
)
def delete_user(
    request: Request, principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> None:
    """Delete a user; audit entries keep their name. The last administrator cannot be deleted."""
    user = access_service.get_user(session, principal, user_id)
    access_service.delete_user(session, principal, user=user, cipher=_cipher(request))


@users_router.post(
    "/{user_id}/disable",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409),
)
def disable_user(
    principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> User:
    """Disable a user: no logins, and their tokens and sessions stop working at once."""
    user = access_service.get_user(session, principal, user_id)
    return access_service.set_status(
        session, principal, user=user, status=UserStatus.DISABLED
    )


@users_router.post(
    "/{user_id}/enable",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404),
)
def enable_user(
    principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> User:
    """Enable a disabled or locked user (the failure counter restarts)."""
    user = access_service.get_user(session, principal, user_id)
    return access_service.set_status(
        session, principal, user=user, status=UserStatus.ACTIVE
    )


@users_router.post(
    "/{user_id}/lock",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409),
)
def lock_user(principal: UsersWriter, session: SessionDep, user_id: uuid.UUID) -> User:
    """Lock an active user until unlocked (their sessions end; the licence seat stays). Failed logins never lock a user."""
    user = access_service.get_user(session, principal, user_id)
    return access_service.lock_user(session, principal, user=user)


@users_router.post(
    "/{user_id}/unlock",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404),
)
def unlock_user(
    principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> User:
    """Lift an administrator's lock and clear the failed-login counters of every address."""
    user = access_service.get_user(session, principal, user_id)
    access_service.check_manageable(principal, user)
    access_service.unlock_user(
        session, principal.actor, user=user, reason="by_administrator"
    )
    return user


@users_router.post(
    "/{user_id}/reset-password",
    responses=problem_responses(401, 403, 404),
)
def reset_user_password(
    principal: UsersWriter,
    session: SessionDep,
    hasher: PasswordHasherDep,
    user_id: uuid.UUID,
) -> TemporaryPassword:
    """Set a random temporary password (shown once) that must be changed at next login; ends the user's sessions."""
    user = access_service.get_user(session, principal, user_id)
    temporary = access_service.reset_password(session, hasher, principal, user=user)
    return TemporaryPassword(temporary_password=temporary)


@users_router.post(
    "/{user_id}/2fa/disable",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409),
)
def disable_user_two_factor(
    request: Request, principal: UsersWriter, session: SessionDep, user_id: uuid.UUID
) -> User:
    """Remove a user's two-factor authentication (lost authenticator); they can enrol again."""
    user = access_service.get_user(session, principal, user_id)
    access_service.check_manageable(principal, user)
    totp_service.disable(
        session, _cipher(request), principal.actor, user=user, code=None
    )
    return user


# --- departments ---------------------------------------------------------------


@departments_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DepartmentRead,
    responses=problem_responses(401, 403, 409, 415, 422),
)
def create_department(
    body: DepartmentCreate, principal: DepartmentsWriter, session: SessionDep
) -> Department:
    """Create a department (names are unique, ignoring case)."""
    return departments_service.create_department(
        session, principal, name=body.name, description=body.description
    )


@departments_router.get(
    "", response_model=Page[DepartmentRead], responses=problem_responses(401, 403, 422)
)
def list_departments(
    _principal: DepartmentsReader, session: SessionDep, params: Params, q: Search = None
) -> dict[str, object]:
    """List departments (filter `q`; sortable by created_at, name)."""
    rows, total = departments_service.list_departments(session, params=params, q=q)
    return page_of(rows, total, params, DepartmentRead)


@departments_router.get(
    "/{department_id}",
    response_model=DepartmentRead,
    responses=problem_responses(401, 403, 404),
)
def read_department(
    _principal: DepartmentsReader, department: DepartmentDep
) -> Department:
    """One department."""
    return department


@departments_router.patch(
    "/{department_id}",
    response_model=DepartmentRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def update_department(
    body: DepartmentUpdate,
    principal: DepartmentsWriter,
    session: SessionDep,
    department: DepartmentDep,
) -> Department:
    """Rename or describe a department."""
    return departments_service.update_department(
        session,
        principal,
        department=department,
        changes=body.model_dump(exclude_unset=True),
    )


@departments_router.delete(
    "/{department_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409),
)
def delete_department(
    principal: DepartmentsWriter, session: SessionDep, department: DepartmentDep
) -> None:
    """Delete an empty department; 409 names the users, clients or certificates still in it."""
    departments_service.delete_department(session, principal, department=department)


# --- roles and the entitlement catalogue ---------------------------------------


@roles_router.get("/entitlements", responses=problem_responses(401, 403))
def list_entitlements(_principal: RolesReader) -> list[EntitlementRead]:
    """The entitlement catalogue, each with what it allows."""
    return [
        EntitlementRead(name=entitlement.value, description=DESCRIPTIONS[entitlement])
        for entitlement in Entitlement
    ]


@roles_router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleRead,
    responses=problem_responses(401, 403, 409, 415, 422),
)
def create_role(body: RoleCreate, principal: RolesWriter, session: SessionDep) -> Role:
    """Create a role from catalogue entitlements you hold yourself."""
    return roles_service.create_role(
        session,
        principal,
        name=body.name,
        description=body.description,
        entitlements=[e.value for e in body.entitlements],
    )


@roles_router.get(
    "/roles", response_model=Page[RoleRead], responses=problem_responses(401, 403, 422)
)
def list_roles(
    _principal: RolesReader, session: SessionDep, params: Params, q: Search = None
) -> dict[str, object]:
    """List roles (filter `q`; sortable by created_at, name)."""
    rows, total = roles_service.list_roles(session, params=params, q=q)
    return page_of(rows, total, params, RoleRead)


@roles_router.get(
    "/roles/{role_id}",
    response_model=RoleRead,
    responses=problem_responses(401, 403, 404),
)
def read_role(_principal: RolesReader, role: RoleDep) -> Role:
    """One role with its entitlements."""
    return role


@roles_router.patch(
    "/roles/{role_id}",
    response_model=RoleRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def update_role(
    body: RoleUpdate, principal: RolesWriter, session: SessionDep, role: RoleDep
) -> Role:
    """Change a role; every holder has the new entitlements from their next request."""
    changes = body.model_dump(exclude_unset=True)
    if body.entitlements is not None:
        changes["entitlements"] = [e.value for e in body.entitlements]
    return roles_service.update_role(session, principal, role=role, changes=changes)


@roles_router.delete(
    "/roles/{role_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409),
)
def delete_role(principal: RolesWriter, session: SessionDep, role: RoleDep) -> None:
    """Delete a custom role nobody holds; built-in roles cannot be deleted."""
    roles_service.delete_role(session, principal, role=role)
