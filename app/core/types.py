"""Column types shared by every feature, and the one key of case-insensitive names."""

import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Dialect, Enum
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = (
            value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        )
        return (
            moment.replace(tzinfo=UTC)
            if moment.tzinfo is None
            else moment.astimezone(UTC)
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_column_type(enum: type[StrEnum]) -> Enum:
    """A StrEnum stored as its string value in a VARCHAR (no native enum, no CHECK)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


def name_key(name: str) -> str:
    """The case-insensitive form of a unique name (usernames, departments, roles).

    Unicode case folding in Python, stored in a key column with a unique index:
    `ÄRZTE` and `ärzte`, `STRASSE` and `straße` collide on every database
    (SQLite's lower() folds ASCII only).
    """
    return unicodedata.normalize("NFC", name.strip()).casefold()
