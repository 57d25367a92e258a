"""List pagination and sorting: `offset`, `limit`, `sort` in; `{offset, limit, count, total, data}` out."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import operators

from app.core.errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Far beyond any table here, and offset + limit stays inside a 64-bit integer on every database.
MAX_OFFSET = 1_000_000_000_000
# Counting matches costs as much as reading them: a list over a growing table (the
# audit log) would cost more with every row. Past this many, `total` is a lower bound.
COUNT_LIMIT = 10_000


class PageParams(BaseModel):
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    sort: str | None = None


def page_params(
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip (max 10^12).")
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Rows to return (max 1000).")
    ] = DEFAULT_LIMIT,
    sort: Annotated[
        str | None,
        Query(
            description="Comma-separated fields, `-` for descending: `-created_at,+name`.",
            max_length=200,
        ),
    ] = None,
) -> PageParams:
    return PageParams(offset=offset, limit=limit, sort=sort)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(from_attributes=True)

    offset: int
    limit: int
    count: int
    total: int = Field(
        description=f"Rows matching the filters; counted up to {COUNT_LIMIT:,}, beyond "
        "which it is a lower bound (see `total_exact`)."
    )
    total_exact: bool = Field(
        description="False when more rows match than were counted: `total` is then a "
        "lower bound, and pages go on while `count` equals `limit`."
    )
    data: list[T]


def order_by_clauses(
    sort: str | None, allowed: Mapping[str, InstrumentedAttribute[Any]], default: str
) -> list[Any]:
    """Translate `-created_at,+name` into ORDER BY clauses over a whitelist.

    Raises:
        InvalidInput: a field is not sortable.
    """
    clauses = []
    for raw in (sort or default).split(","):
        term = raw.strip()
        if not term:
            continue
        descending = term.startswith("-")
        name = term.lstrip("+-").strip()
        column = allowed.get(name)
        if column is None:
            raise InvalidInput(
                f"Cannot sort by '{name}'; sortable fields: {', '.join(sorted(allowed))}.",
                invalid_params=[
                    {
                        "name": "sort",
                        "in": "query",
                        "reason": f"unknown sort field '{name}'",
                    }
                ],
            )
        clauses.append(column.desc() if descending else column.asc())
    return clauses


def paginate(
    session: Session,
    statement: Select[Any],
    params: PageParams,
    *,
    sortable: Mapping[str, InstrumentedAttribute[Any]],
    default_sort: str = "-created_at",
    tiebreaker: InstrumentedAttribute[Any] | None = None,
) -> tuple[Sequence[Any], int]:
    """Run a filtered SELECT one page at a time; returns the rows and `bounded_count` of all.

    The tiebreaker runs in the first sort term's direction, so that an index ending in
    (sort column, tiebreaker) yields the page in order, without sorting every match.
    """
    total = bounded_count(session, statement)
    clauses = order_by_clauses(params.sort, sortable, default_sort)
    ordered = statement.order_by(*clauses)
    if tiebreaker is not None:
        descending = bool(clauses) and clauses[0].modifier is operators.desc_op
        ordered = ordered.order_by(tiebreaker.desc() if descending else tiebreaker)
    rows = session.scalars(ordered.offset(params.offset).limit(params.limit)).all()
    return rows, total


def bounded_count(session: Session, statement: Select[Any]) -> int:
    """How many rows `statement` selects, counting at most `COUNT_LIMIT` + 1 of them.

    A result above `COUNT_LIMIT` means "more than that": `page_of` reports it so.
    """
    # Only a constant per row: an index can answer without reading the rows.
    matches = (
        statement.order_by(None)
        .with_only_columns(literal_column("1"), maintain_column_froms=True)
        .limit(COUNT_LIMIT + 1)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(matches)) or 0


def page_of(
    rows: Sequence[Any], total: int, params: PageParams, schema: type[BaseModel]
) -> dict[str, Any]:
    """The list envelope, each row shaped by `schema`; `total` as `bounded_count` gave it."""
    exact = total <= COUNT_LIMIT
    return {
        "offset": params.offset,
        "limit": params.limit,
        "count": len(rows),
        "total": total if exact else max(COUNT_LIMIT, params.offset + len(rows)),
        "total_exact": exact,
        "data": [schema.model_validate(row) for row in rows],
    }
