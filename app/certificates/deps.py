"""Loaders for the certificate routes."""

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.access.entitlements import Entitlement
from app.access.policy import AuthenticatedDep, require
from app.access.principal import Principal
from app.certificates import service as vault_service
from app.certificates.models import SigningCertificate
from app.certificates.vault import Vault
from app.core.crypto import EnvelopeCipher
from app.core.deps import SessionDep
from app.core.errors import ServiceUnavailable

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.CERTIFICATES_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.CERTIFICATES_WRITE))]
AssignPrincipal = Annotated[
    Principal, Depends(require(Entitlement.CERTIFICATES_ASSIGN))
]


async def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


async def get_cipher(request: Request) -> EnvelopeCipher:
    """Raises: ServiceUnavailable while the master key is missing."""
    cipher: EnvelopeCipher | None = request.app.state.cipher
    if cipher is None:
        raise ServiceUnavailable(
            "The master key is not loaded, so secrets cannot be stored (see /ready)."
        )
    return cipher


def _certificate(
    certificate_id: uuid.UUID, session: SessionDep, principal: AuthenticatedDep
) -> SigningCertificate:
    # The route declares the entitlement; this loader only scopes (404 if unseen).
    return vault_service.get_certificate(session, principal, certificate_id)


VaultDep = Annotated[Vault, Depends(get_vault)]
CipherDep = Annotated[EnvelopeCipher, Depends(get_cipher)]
CertificateDep = Annotated[SigningCertificate, Depends(_certificate)]
