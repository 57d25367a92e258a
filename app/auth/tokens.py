"""JWT access tokens: ES256 with a `kid`, algorithm pinned on verification."""

import base64
import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.config import Settings
from app.core.errors import InvalidToken
from app.core.storage import make_private_dir
from app.core.types import utcnow

ALGORITHM = "ES256"
KEY_FILE_NAME = "jwt-signing-key.pem"
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


class TokenKeys:
    """The key that signs access tokens, and the rules they are checked by."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the JWT key must be an EC P-256 key")
        self._private_key = private_key
        self._public_key = private_key.public_key()
        public_der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = (
            base64.urlsafe_b64encode(hashlib.sha256(public_der).digest()[:12])
            .decode()
            .rstrip("=")
        )
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_seconds)
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._verified_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenKeys":
        if settings.jwt_private_key is not None:
            pem = settings.jwt_private_key.get_secret_value().encode()
        else:
            pem = load_or_create_key_file(settings.data_dir / KEY_FILE_NAME)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the JWT key must be an EC P-256 private key")
        return cls(
            key,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        )

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
        token = jwt.encode(
            payload, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
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
        if header.get("kid") != self.kid:
            raise InvalidToken("The access token was signed by an unknown key.")
        try:
            payload = jwt.decode(
                token,
                self._public_key,
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


def load_or_create_key_file(path: Path) -> bytes:
    """Read the PEM key file, or create it (0600) if absent; safe when workers race to create it."""
    if path.exists():
        return path.read_bytes()
    make_private_dir(path.parent)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole to a private temp file, then linked into place: a racing
    # worker either wins the link or reads the complete winner.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        temp.unlink(missing_ok=True)
    return pem
