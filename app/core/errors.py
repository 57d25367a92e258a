"""Domain errors and their one rendering: RFC 9457 problem+json."""

import errno
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.context import current_request

logger = logging.getLogger("signvault.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class AppError(Exception):
    """An expected failure with a stable `code`, rendered as problem+json."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    media_type: ClassVar[str] = "application/problem+json"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="signvault"'})
        super().__init__(detail, **kwargs)


class InvalidToken(NotAuthenticated):
    code = "invalid_token"
    title = "Invalid access token"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault(
            "headers",
            {
                "WWW-Authenticate": f'Bearer realm="signvault", error="invalid_token", error_description="{detail or self.title}"'
            },
        )
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


# A validation error names at most this many fields; the rest are counted, not listed.
MAX_INVALID_PARAMS = 20


def bounded_invalid_params(
    params: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """`invalid_params` cut to MAX_INVALID_PARAMS, with `invalid_params_omitted` beyond."""
    extra: dict[str, Any] = {
        "invalid_params": [dict(p) for p in params[:MAX_INVALID_PARAMS]]
    }
    if len(params) > MAX_INVALID_PARAMS:
        extra["invalid_params_omitted"] = len(params) - MAX_INVALID_PARAMS
    return extra


class InvalidInput(AppError):
    """A 422 for input that is well-formed but refused; `invalid_params` names the fields."""

    status = 422
    code = "validation_failed"
    title = "Invalid input"

    def __init__(
        self,
        detail: str,
        *,
        invalid_params: Sequence[Mapping[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        extra = dict(kwargs.pop("extra", {}) or {})
        if invalid_params:
            extra.update(bounded_invalid_params(invalid_params))
        super().__init__(detail, extra=extra, **kwargs)


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


# How long a client is asked to wait after a full disk: freeing space takes an operator.
STORAGE_RETRY_AFTER_SECONDS = 60


class ServerBusy(AppError):
    """Every pooled database connection stayed busy past the pool's timeout: overload, not failure."""

    status = 503
    code = "server_busy"
    title = "Server busy"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "2"})
        super().__init__(
            detail or "Every database connection is in use; try again shortly.",
            **kwargs,
        )


class InsufficientStorage(AppError):
    """The blob store's or the database's filesystem is full: nothing was stored."""

    status = 507
    code = "insufficient_storage"
    title = "Insufficient storage"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)})
        super().__init__(
            detail
            or "The server's storage is full; nothing was stored. Try again once space is freed.",
            **kwargs,
        )


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_POSTGRESQL_DISK_FULL = (
    "53100"  # SQLSTATE disk_full: "could not extend file", temp files
)


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, says a filesystem is full.

    ENOSPC or EDQUOT from the blob store, SQLite's SQLITE_FULL ("database or
    disk is full"), PostgreSQL's disk_full; through SQLAlchemy's wrapping too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        ):
            return True
        if getattr(current, "sqlstate", None) == _POSTGRESQL_DISK_FULL:
            return True
        current = (
            getattr(current, "orig", None) or current.__cause__ or current.__context__
        )
    return False


def _trace_id() -> str | None:
    context = current_request()
    return context.request_id if context else None


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    media_type: str = PROBLEM_MEDIA_TYPE,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:signvault:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "trace_id": _trace_id(),
    }
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=media_type
    )


def app_error_response(exc: AppError, *, metrics: Any = None) -> JSONResponse:
    """The problem+json of a domain error (also for middleware, outside the handlers)."""
    if metrics is not None:
        metrics.problems.labels(exc.code).inc()
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        headers=exc.headers,
        extra=exc.extra,
        media_type=exc.media_type,
    )


def _render_app_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, AppError):
        raise TypeError(exc)
    return app_error_response(exc, metrics=getattr(request.app.state, "metrics", None))


def _render_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise TypeError(exc)
    errors = exc.errors()
    params = []
    for error in errors[:MAX_INVALID_PARAMS]:
        location = [str(part) for part in error.get("loc", ())]
        where = location[0] if location else "body"
        name = ".".join(location[1:]) or where
        params.append(
            {
                "name": name,
                "in": where,
                "reason": str(error.get("msg", "invalid"))[:500],
            }
        )
    names = ", ".join(sorted({p["name"][:100] for p in params}))
    omitted = len(errors) - len(params)
    more = f" (and {omitted} more, not listed)" if omitted else ""
    return problem_response(
        422,
        "validation_failed",
        "Invalid input",
        f"The request has invalid fields: {names}{more}.",
        extra=bounded_invalid_params(params)
        | ({"invalid_params_omitted": omitted} if omitted else {}),
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _render_http_exception(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(exc)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    if exc.status_code == 405:
        detail = "This method is not allowed on this resource."
    return problem_response(exc.status_code, code, title, detail, headers=exc.headers)


def _render_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return unexpected_error_response(exc)


def unexpected_error_response(
    exc: BaseException, *, metrics: Any = None
) -> JSONResponse:
    """A 507 for a full disk, else the 500 of an unexpected error (logged with its traceback)."""
    if is_storage_full(exc):
        return storage_full_response(exc, metrics=metrics)
    logger.exception("unhandled error (trace_id=%s)", _trace_id(), exc_info=exc)
    return problem_response(
        500,
        "internal_error",
        "Internal server error",
        "The server failed to handle this request; quote the trace_id when reporting it.",
    )


def storage_full_response(exc: BaseException, *, metrics: Any = None) -> JSONResponse:
    logger.error(
        "storage full (trace_id=%s): %s: %s",
        _trace_id(),
        type(exc).__name__,
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
    )
    return app_error_response(InsufficientStorage(), metrics=metrics)


def _render_os_error(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_error_response(
        exc, metrics=getattr(request.app.state, "metrics", None)
    )


def _render_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return database_unavailable_response(
        exc, metrics=getattr(request.app.state, "metrics", None)
    )


def database_unavailable_response(
    exc: Exception, *, metrics: Any = None
) -> JSONResponse:
    """A 503 for a database out of reach; a 507 when the database's disk is full."""
    if is_storage_full(exc):
        return storage_full_response(exc, metrics=metrics)
    logger.error(
        "database unavailable (trace_id=%s): %s", _trace_id(), type(exc).__name__
    )
    return problem_response(
        503,
        "database_unavailable",
        "Database unavailable",
        "The database cannot be reached right now; try again shortly.",
        headers={"Retry-After": "5"},
    )


def _render_pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database connection pool exhausted (trace_id=%s)", _trace_id())
    return app_error_response(
        ServerBusy(), metrics=getattr(request.app.state, "metrics", None)
    )


def _render_unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the request carried (PostgreSQL: a NUL
    # character in text); the transaction was rolled back, nothing was stored.
    logger.info("database refused a request value (trace_id=%s): %s", _trace_id(), exc)
    return app_error_response(
        InvalidInput(
            "A value in the request cannot be stored or searched (a NUL character, or a number out of range)."
        ),
        metrics=getattr(request.app.state, "metrics", None),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _render_app_error)
    app.add_exception_handler(OperationalError, _render_database_unavailable)
    app.add_exception_handler(PoolTimeout, _render_pool_exhausted)
    app.add_exception_handler(DataError, _render_unstorable_value)
    app.add_exception_handler(OSError, _render_os_error)
    app.add_exception_handler(RequestValidationError, _render_validation_error)
    app.add_exception_handler(StarletteHTTPException, _render_http_exception)
    app.add_exception_handler(Exception, _render_unexpected)


_STATUS_DESCRIPTIONS = {
    400: "Bad request",
    401: "Authentication required or failed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Invalid input",
    429: "Too many requests",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route can answer."""
    return {
        status: {
            "description": _STATUS_DESCRIPTIONS.get(status, "Error"),
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for status in statuses
    }
