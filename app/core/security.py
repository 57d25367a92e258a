"""Password hashing (argon2id through passlib) and secret-token helpers."""

import hashlib
import hmac
import os
import secrets
import threading

from passlib.context import CryptContext


def max_concurrent_hashes() -> int:
    """Password hashes a process computes at once: one per core, at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


class PasswordHasher:
    """argon2id hashing; verifies an unknown user against a dummy hash so timing does not tell."""

    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        # Each hash takes `memory_kib` (64 MiB by default) for its duration: a burst
        # of logins, each in its own thread, would hold that many times it at once.
        # Past one per core more at once only share the CPU, so they wait here.
        self._slots = threading.BoundedSemaphore(max_concurrent_hashes())
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_kib,
            argon2__parallelism=1,
        )
        self._dummy_hash = self._context.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        with self._slots:
            return str(self._context.hash(password))

    def verify(self, password: str, password_hash: str | None) -> bool:
        with self._slots:
            if password_hash is None:
                self._context.verify(password, self._dummy_hash)
                return False
            return bool(self._context.verify(password, password_hash))

    def needs_rehash(self, password_hash: str) -> bool:
        return bool(self._context.needs_update(password_hash))


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (refresh tokens, client secrets)."""
    return secrets.token_urlsafe(nbytes)


def secret_digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret; such secrets need no slow hash, only no clear copy."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), digest)
