"""The route class every router uses.

A JSON body must arrive as JSON (415 otherwise), and the problems FastAPI
answers before a handler runs are documented on every route that can get them:
422 for invalid parameters or body, 400 for a body that cannot be parsed at all
(not UTF-8, a broken multipart form), both as problem+json.
"""

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from app.core.errors import PROBLEM_MEDIA_TYPE, UnsupportedMediaType, problem_responses


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class AppRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # A body read by the handler itself is declared in openapi_extra.
        takes_body = self.body_field is not None or "requestBody" in (
            self.openapi_extra or {}
        )
        statuses = [400] if takes_body else []
        if takes_body or get_flat_params(self.dependant):
            statuses.append(422)
        self.responses = _with_problems(self.responses, statuses)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body = self.body_field
        if body is None or isinstance(body.field_info, params.Form):
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if await request.body() and not is_json_media_type(content_type):
                raise UnsupportedMediaType(
                    f"This endpoint takes application/json, not {content_type or 'an untyped body'}."
                )
            return await handler(request)

        return json_only


def _with_problems(
    responses: dict[int | str, dict[str, Any]], statuses: list[int]
) -> dict[int | str, dict[str, Any]]:
    """`responses` plus problem+json under each status (next to what a route declares there)."""
    merged = dict(responses)
    for status, problem in problem_responses(*statuses).items():
        declared = merged.get(status, merged.get(str(status)))
        if declared is None:
            merged[status] = problem
        elif PROBLEM_MEDIA_TYPE not in declared.get("content", {}):
            merged[status] = {
                **declared,
                "content": {**declared.get("content", {}), **problem["content"]},
            }
    return merged
