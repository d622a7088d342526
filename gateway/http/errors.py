"""API errors, answered as Wazo does: JSON with message, error_id, details; never a stack trace."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.db.engine import DatabaseUnavailable

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    error_id = "unexpected-error"

    def __init__(self, message: str, details: dict[str, Any] | None = None, resource: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.resource = resource
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": self.message,
            "error_id": self.error_id,
            "details": self.details,
            "timestamp": time.time(),
        }
        if self.resource:
            body["resource"] = self.resource
        return body


class InvalidData(ApiError):
    """400 naming the field: `details` maps each bad field to what is wrong with it."""

    status = 400
    error_id = "invalid-data"

    def __init__(self, fields: dict[str, str], resource: str | None = None) -> None:
        summary = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(
            f"Input Error - {summary}",
            {name: {"message": problem, "constraint_id": "invalid"} for name, problem in fields.items()},
            resource,
        )
        self.fields = fields


class BadRequest(ApiError):
    status = 400
    error_id = "invalid-data"


class Unauthorized(ApiError):
    status = 401
    error_id = "unauthorized"


class Forbidden(ApiError):
    status = 403
    error_id = "forbidden"


class NotFound(ApiError):
    status = 404
    error_id = "not-found"

    def __init__(self, resource: str, **identifiers: Any) -> None:
        names = ", ".join(f"{key}: {value}" for key, value in identifiers.items())
        super().__init__(f"Resource Not Found - {resource} was not found ({names})", identifiers, resource)


class Conflict(ApiError):
    status = 409
    error_id = "conflict"


class TooManyRequests(ApiError):
    """429 with a Retry-After (RFC 6585)."""

    status = 429
    error_id = "too-many-requests"

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = retry_after


class ServiceUnavailable(ApiError):
    status = 503
    error_id = "service-unavailable"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.to_json(), status=error.status, headers=error.headers or None)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_ERROR_IDS = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        http_error = ApiError(exc.reason)
        http_error.status = exc.status
        http_error.error_id = _HTTP_ERROR_IDS.get(exc.status, "http-error")
        response = error_response(http_error)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except DatabaseUnavailable as exc:
        logger.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        return error_response(ServiceUnavailable("Service unavailable: the database did not answer in time; try again"))
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(ApiError("Unexpected error"))
