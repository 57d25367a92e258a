from datetime import datetime

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

STATE_ROW_ID = 1
TOTAL_PERIOD = "total"


class LicenseStateRow(Base):
    """The single row holding the installed licence file and the evaluation start.

    The file is stored as uploaded and re-verified on every use, so editing this
    row by hand does not change what the server allows. Creators of users and
    certificates lock it to count exactly.
    """

    __tablename__ = "license_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    evaluation_started_at: Mapped[datetime]
    license_text: Mapped[str | None] = mapped_column(Text)
    installed_at: Mapped[datetime | None]
    installed_by: Mapped[str | None] = mapped_column(String(200))
    # The smallest `license.expiring` threshold (days) already announced for the
    # licence (or evaluation) in force; reset by an install.
    expiry_warned_days: Mapped[int | None]


class LicenseUsage(Base):
    """Signature counters: one row per calendar month (`YYYY-MM`, UTC) and one `total`.

    They are incremented with a conditional UPDATE inside the signing
    transaction: a rolled-back signature does not count, and concurrent signers
    can never pass a limit. The `total` row's `updated_at` is the latest time the
    server has counted (or refused) a signature at: licence time never runs
    backwards from it.
    """

    __tablename__ = "license_usage"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    signatures: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None]
