"""Who is calling: a user or an API client, with the entitlements in force for this request."""

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

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
