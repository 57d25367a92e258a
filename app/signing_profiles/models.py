from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdMixin, TimestampMixin


class SigningProfile(IdMixin, TimestampMixin, Base):
    """A named set of sign options that a sign request can name instead of spelling them out.

    A null option leaves it to the request, then to the `signing` settings section.
    """

    __tablename__ = "signing_profiles"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    level: Mapped[str | None] = mapped_column(String(8))
    tsa_url: Mapped[str | None] = mapped_column(String(500))
    certify: Mapped[str | None] = mapped_column(String(32))
    # {page, box, text}: the stamp of requests that give no appearance of their own.
    appearance: Mapped[dict[str, Any] | None]
