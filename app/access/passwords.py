"""The password policy's rules, each failure named, and passwords that satisfy them."""

import secrets
import string
from collections.abc import Sequence

from app.access.errors import PasswordRejected
from app.core.security import PasswordHasher
from app.settings.schemas import PasswordPolicy

SYMBOLS = frozenset(string.punctuation + " ")


def violations(policy: PasswordPolicy, password: str) -> list[str]:
    """Which character rules `password` breaks, as messages; empty when it complies."""
    found = []
    if len(password) < policy.min_length:
        found.append(f"must be at least {policy.min_length} characters long")
    if policy.require_uppercase and not any(c.isupper() for c in password):
        found.append("must contain an uppercase letter")
    if policy.require_lowercase and not any(c.islower() for c in password):
        found.append("must contain a lowercase letter")
    if policy.require_digit and not any(c.isdigit() for c in password):
        found.append("must contain a digit")
    if policy.require_symbol and not any(
        c in SYMBOLS or not c.isalnum() for c in password
    ):
        found.append("must contain a symbol")
    return found


def check(
    policy: PasswordPolicy,
    hasher: PasswordHasher,
    password: str,
    *,
    field: str = "password",
    previous_hashes: Sequence[str] = (),
) -> None:
    """Raises: PasswordRejected naming every rule broken (and reuse of a recent password)."""
    found = violations(policy, password)
    if not found and any(hasher.verify(password, old) for old in previous_hashes):
        found.append(f"must not be one of the last {policy.history} passwords")
    if found:
        raise PasswordRejected(
            f"The {field.replace('_', ' ')} {'; '.join(found)}.",
            invalid_params=[
                {"name": field, "in": "body", "reason": reason} for reason in found
            ],
        )


def generate(policy: PasswordPolicy) -> str:
    """A random password meeting every character rule of `policy` (temporary passwords)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    required = [
        secrets.choice(string.ascii_uppercase),
        secrets.choice(string.ascii_lowercase),
        secrets.choice(string.digits),
        secrets.choice("-_.!@#%"),
    ]
    rest = [secrets.choice(alphabet) for _ in range(max(policy.min_length, 20) - 4)]
    chars = required + rest
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)
