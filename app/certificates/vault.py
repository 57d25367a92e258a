"""Signers for vault keys, kept per process so a signature does not pay for a key load.

A decrypted key lives in a small LRU with a short TTL. Disabling, revoking,
deleting or a master-key rotation bump `vault_state.version` in the database;
every process compares it on each use and drops its whole cache when it moved.
"""

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access.principal import Principal
from app.certificates import keystores
from app.certificates import service as vault_service
from app.certificates.errors import (
    CertificateNotFound,
    KeyUnavailable,
    Pkcs11NotConfigured,
)
from app.certificates.models import KeyStore, SigningCertificate, VaultState
from app.core.config import Settings
from app.core.crypto import CryptoError, EnvelopeCipher
from app.core.errors import AppError

# The signer cache's version, read with the certificate.
_VERSION = select(VaultState.version).where(VaultState.id == 1).scalar_subquery()


@dataclass(frozen=True, slots=True)
class _Entry:
    signer: Any
    loaded_at: float


class Vault:
    """Hands out pyHanko signers for certificates a principal may use."""

    def __init__(self, *, cipher: EnvelopeCipher | None, settings: Settings) -> None:
        self.cipher = cipher
        self.settings = settings
        self._cache: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._version = -1
        self._lock = threading.Lock()
        self.loads = 0  # key loads (cache misses), for tests and metrics

    def signer_for(
        self, session: Session, principal: Principal, certificate_id: uuid.UUID
    ) -> Any:
        """A pyHanko `Signer` for the certificate, if the principal may sign with it now.

        Raises:
            CertificateNotFound: no such certificate, or one the principal may not see.
            CertificateNotAssigned, CertificateOtherDepartment: a vault manager's,
                not assigned to them (403).
            CertificateDisabled, CertificateRevoked, CertificateDeleted: its state (409).
            CertificateExpired, CertificateNotYetValid: its dates (422).
            KeyUnavailable: the key cannot be opened now (503).
            Pkcs11NotConfigured: an HSM key, and no PKCS#11 module is set (409).
        """
        return self.key_for(session, principal, certificate_id)[1]

    def key_for(
        self, session: Session, principal: Principal, certificate_id: uuid.UUID
    ) -> tuple[SigningCertificate, Any]:
        """The certificate and its signer: `signer_for`, with the certificate it checked."""
        found = session.execute(
            select(SigningCertificate, _VERSION).where(
                SigningCertificate.id == certificate_id
            )
        ).one_or_none()
        if found is None:
            raise CertificateNotFound(f"No certificate {certificate_id}.")
        certificate, version = found[0], found[1] or 0
        try:
            vault_service.check_may_sign(session, principal, certificate)
        except AppError as refusal:
            vault_service.record_key_refused(
                session,
                principal.actor,
                certificate_id=certificate_id,
                code=refusal.code,
            )
            raise
        now = time.monotonic()
        with self._lock:
            if version != self._version:
                self._cache.clear()
                self._version = version
            entry = self._cache.get(certificate_id)
            if (
                entry is not None
                and now - entry.loaded_at < self.settings.signer_cache_ttl_seconds
            ):
                self._cache.move_to_end(certificate_id)
                return certificate, entry.signer
        signer = self._load(session, certificate)
        with self._lock:
            if version == self._version:
                self._cache[certificate_id] = _Entry(signer, now)
                self._cache.move_to_end(certificate_id)
                while len(self._cache) > self.settings.signer_cache_size:
                    self._cache.popitem(last=False)
        return certificate, signer

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def _load(self, session: Session, certificate: SigningCertificate) -> Any:
        self.loads += 1
        chain = certificate.chain_certificates()
        if certificate.key_store is KeyStore.PKCS11:
            return self._pkcs11_signer(certificate, chain)
        if self.cipher is None or certificate.sealed_private_key is None:
            raise KeyUnavailable(
                "The master key is not loaded: the vault cannot open keys (see /ready)."
            )
        try:
            key = self.cipher.open(
                session,
                certificate.sealed_private_key,
                purpose=vault_service.KEY_PURPOSE,
            )
        except CryptoError as exc:
            raise KeyUnavailable(
                f"The certificate's key cannot be opened: {exc}."
            ) from None
        return keystores.pkcs12_signer(key, certificate.certificate_der, chain)

    def _pkcs11_signer(
        self, certificate: SigningCertificate, chain: list[x509.Certificate]
    ) -> Any:
        location = pkcs11_location(
            self.settings,
            token_label=certificate.pkcs11_token_label or "",
            key_label=certificate.pkcs11_key_label or "",
            cert_label=certificate.pkcs11_cert_label,
        )
        token = keystores.open_token(location)
        return keystores.pkcs11_signer(
            token,
            key_label=location.key_label,
            certificate=x509.load_der_x509_certificate(certificate.certificate_der),
            chain=chain,
        )


def pkcs11_location(
    settings: Settings, *, token_label: str, key_label: str, cert_label: str | None
) -> keystores.Pkcs11Location:
    """Raises: Pkcs11NotConfigured (no module in settings)."""
    if settings.pkcs11_module is None:
        raise Pkcs11NotConfigured(
            "Set SIGNVAULT_PKCS11_MODULE (and SIGNVAULT_PKCS11_PIN) to use HSM keys."
        )
    return keystores.Pkcs11Location(
        module=str(settings.pkcs11_module),
        pin=settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin else "",
        token_label=token_label,
        key_label=key_label,
        cert_label=cert_label,
    )
