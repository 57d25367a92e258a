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

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind(self.kind), str(self.id), self.name)

    def has(self, entitlement: str) -> bool:
        return entitlement in self.entitlements

    @property
    def department_id(self) -> uuid.UUID | None:
        if self.user is not None:
            return self.user.department_id
        return self.client.department_id if self.client is not None else None

    @property
    def is_administrator(self) -> bool:
        """Holds the whole entitlement catalogue: sees every department's data."""
        return self.entitlements >= ALL
