"""Password hashing (argon2id through passlib) and secret-token helpers."""

import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from passlib.context import CryptContext


def max_concurrent_hashes() -> int:
    """Password hashes a process computes at once: one per core, at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


class PasswordHasher:
    """argon2id hashing; verifies an unknown user against a dummy hash so timing does not tell."""

    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        # Each hash takes `memory_kib` (19 MiB by default) for its duration. Hashes
        # run on a fixed pool of one thread per core: more at once would only share
        # the CPU, and each thread that ever hashed keeps that memory in its own
        # malloc arena (glibc raises its mmap threshold after the first free), so a
        # burst of logins spread over the request threads would hold it many times.
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrent_hashes(), thread_name_prefix="argon2"
        )
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_kib,
            argon2__parallelism=1,
        )
        self._dummy_hash = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return str(self._pool.submit(self._context.hash, password).result())

    def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            self._pool.submit(self._context.verify, password, self._dummy_hash).result()
            return False
        return bool(
            self._pool.submit(self._context.verify, password, password_hash).result()
        )

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
