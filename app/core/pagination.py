"""List pagination and sorting: `offset`, `limit`, `sort` in; `{offset, limit, count, total, data}` out."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.core.errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Far beyond any table here, and offset + limit stays inside a 64-bit integer on every database.
MAX_OFFSET = 1_000_000_000_000


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
    total: int
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
    """Run a filtered SELECT one page at a time; returns the rows and the unpaginated total."""
    total = (
        session.scalar(
            select(func.count()).select_from(statement.order_by(None).subquery())
        )
        or 0
    )
    ordered = statement.order_by(*order_by_clauses(params.sort, sortable, default_sort))
    if tiebreaker is not None:
        ordered = ordered.order_by(tiebreaker)
    rows = session.scalars(ordered.offset(params.offset).limit(params.limit)).all()
    return rows, total


def page_of(
    rows: Sequence[Any], total: int, params: PageParams, schema: type[BaseModel]
) -> dict[str, Any]:
    """The list envelope, each row shaped by `schema`."""
    return {
        "offset": params.offset,
        "limit": params.limit,
        "count": len(rows),
        "total": total,
        "data": [schema.model_validate(row) for row in rows],
    }
