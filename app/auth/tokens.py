"""JWT access tokens: ES256 with a `kid`, algorithm pinned on verification.

The keys come from a `KeySource` (app.auth.signing_keys: the database, shared by
every host); a token names its key by `kid`, and any key still verifying checks it.
"""

import base64
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from app.core.errors import InvalidToken, ServiceUnavailable
from app.core.types import utcnow

ALGORITHM = "ES256"
# Verified tokens remembered per process (an ES256 check and the JWT parsing cost ~0.3 ms).
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    kind: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    sid: str | None
    scope: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    public_key: ec.EllipticCurvePublicKey
    retire_at: datetime | None  # None: verifies for as long as it is the newest key


@dataclass(frozen=True, slots=True)
class KeySet:
    """The token keys as a process last read them: the one that signs, and all that verify."""

    generation: int
    signing_kid: str | None
    signing_key: ec.EllipticCurvePrivateKey | None
    verifying: Mapping[str, VerifyingKey]
    # Why there is no signing key (the master key is missing, say), for the 503.
    signing_problem: str = "no token signing key exists yet"

    @classmethod
    def of(cls, private_key: ec.EllipticCurvePrivateKey) -> "KeySet":
        """One key that signs and verifies, held in memory only."""
        check_curve(private_key)
        kid = key_id(private_key.public_key())
        return cls(
            0, kid, private_key, {kid: VerifyingKey(private_key.public_key(), None)}
        )

    def public_key(
        self, kid: object, now: datetime
    ) -> ec.EllipticCurvePublicKey | None:
        """The key `kid` names, if it verifies at `now`."""
        found = self.verifying.get(kid) if isinstance(kid, str) else None
        if found is None or (found.retire_at is not None and found.retire_at <= now):
            return None
        return found.public_key


class KeySource(Protocol):
    """Hands out the current `KeySet`; `fresh`: read the shared store now, not the copy."""

    def __call__(self, *, fresh: bool = False) -> KeySet: ...


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid`: the first 12 bytes of the SHA-256 of the public key's DER, base64url."""
    public_der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (
        base64.urlsafe_b64encode(hashlib.sha256(public_der).digest()[:12])
        .decode()
        .rstrip("=")
    )


def check_curve(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the JWT key must be an EC P-256 key")


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Raises: ValueError (not a PEM EC P-256 private key)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the JWT key must be an EC P-256 private key")
    check_curve(key)
    return key


class TokenKeys:
    """Issues and checks access tokens with the keys a `KeySource` hands out."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_seconds)
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._generation: int | None = None

    @classmethod
    def single(
        cls,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> "TokenKeys":
        """Keys of one in-memory private key (no database)."""
        keyset = KeySet.of(private_key)

        def source(*, fresh: bool = False) -> KeySet:
            return keyset

        return cls(source, issuer=issuer, audience=audience, ttl_seconds=ttl_seconds)

    @property
    def kid(self) -> str | None:
        """The key id new tokens are signed with."""
        return self._current().signing_kid

    def signing_ready(self) -> str | None:
        """None when new tokens can be signed; otherwise why not."""
        keyset = self._current()
        return None if keyset.signing_key is not None else keyset.signing_problem

    def public_jwks(self) -> list[dict[str, str]]:
        """The verifying keys as RFC 7517 JWKs, newest first."""
        keyset, now = self._current(), utcnow()
        found = []
        for kid in keyset.verifying:
            public_key = keyset.public_key(kid, now)
            if public_key is not None:
                jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
                found.append(
                    {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}  # RFC 7518 §3.1
                )
        return found

    def _current(self, *, fresh: bool = False) -> KeySet:
        keyset = self._keys(fresh=fresh)
        if keyset.generation != self._generation:
            # A rotation (or a retired key) anywhere: tokens are checked anew.
            with self._verified_lock:
                self._verified.clear()
                self._generation = keyset.generation
        return keyset

    def issue(
        self,
        *,
        sub: str,
        kind: str,
        sid: str | None,
        scope: frozenset[str] | None,
        ttl: timedelta | None = None,
    ) -> tuple[str, AccessClaims]:
        now = utcnow().replace(microsecond=0)
        claims = AccessClaims(
            sub=sub,
            kind=kind,
            jti=uuid.uuid4().hex,
            issued_at=now,
            expires_at=now + (ttl or self.ttl),
            sid=sid,
            scope=scope,
        )
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
            "jti": claims.jti,
            "kind": kind,
        }
        if sid is not None:
            payload["sid"] = sid
        if scope is not None:
            payload["scope"] = " ".join(sorted(scope))
        keyset = self._current()
        if keyset.signing_key is None:
            raise ServiceUnavailable(
                f"Access tokens cannot be signed now: {keyset.signing_problem}."
            )
        token = jwt.encode(
            payload,
            keyset.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": keyset.signing_kid},
        )
        return token, claims

    def verify(self, token: str, *, leeway_seconds: int = 5) -> AccessClaims:
        """Check signature, algorithm, key id, issuer, audience and expiry.

        A token that verified once is remembered (a client sends the same one on
        every request): only its expiry is checked again. Revocation is the
        caller's check, against the database, every time.

        Raises:
            InvalidToken: any check fails; the detail says which.
        """
        self._current()  # drops remembered tokens when the keys changed
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token, leeway_seconds)
            with self._verified_lock:
                self._verified[token] = claims
                if len(self._verified) > VERIFIED_TOKENS_KEPT:
                    self._verified.popitem(last=False)
        elif utcnow() >= claims.expires_at + timedelta(seconds=leeway_seconds):
            raise InvalidToken("The access token has expired.")
        return claims

    def _verify(self, token: str, leeway_seconds: int) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise InvalidToken("The access token is not a well-formed JWT.") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"The access token must be signed with {ALGORITHM}.")
        kid, now = header.get("kid"), utcnow()
        public_key = self._current().public_key(kid, now)
        if public_key is None:
            # Maybe a key rotated on another host this instant: read the store.
            public_key = self._current(fresh=True).public_key(kid, now)
        if public_key is None:
            raise InvalidToken("The access token was signed by an unknown key.")
        try:
            payload = jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The access token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The access token is from another issuer.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The access token signature does not verify.") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The access token is invalid: {exc}.") from None
        kind = payload.get("kind")
        if kind not in ("user", "client"):
            raise InvalidToken("The access token has no valid principal kind.")
        scope = payload.get("scope")
        return AccessClaims(
            sub=str(payload["sub"]),
            kind=kind,
            jti=str(payload["jti"]),
            issued_at=datetime.fromtimestamp(payload["iat"], tz=UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
            sid=payload.get("sid"),
            scope=frozenset(scope.split()) if isinstance(scope, str) else None,
        )
