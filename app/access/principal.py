"""Who is calling: a user or an API client, with the entitlements in force for this request."""

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.access.entitlements import ALL
from app.audit.service import Actor, ActorKind

if TYPE_CHECKING:
    from app.access.models import User
    from app.auth.models import ApiClient
    from app.auth.tokens import AccessClaims


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "client"]
    id: uuid.UUID
    name: str
    entitlements: frozenset[str]
    claims: "AccessClaims"
    user: "User | None" = None
    client: "ApiClient | None" = None
    # A client's department while its owner still belongs to it (auth.service.client_standing).
    client_department_id: uuid.UUID | None = None

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind(self.kind), str(self.id), self.name)

    def has(self, entitlement: str) -> bool:
        return entitlement in self.entitlements

    @property
    def department_id(self) -> uuid.UUID | None:
        if self.user is not None:
            return self.user.department_id
        return self.client_department_id

    @property
    def acting_user_id(self) -> uuid.UUID | None:
        """The user this principal speaks for: the user itself, or a client's owner.

        What nobody may do to themselves (change their own roles or department,
        edit a role they hold), a client may not do to its owner either.
        """
        if self.user is not None:
            return self.user.id
        return self.client.created_by_id if self.client is not None else None

    @property
    def is_administrator(self) -> bool:
        """Holds the whole entitlement catalogue: sees every department's data."""
        return self.entitlements >= ALL
