"""Request bodies and parameters checked by pydantic models; a bad one is a 400 naming the field."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.http.errors import BadRequest, InvalidData, NotFound

Model = TypeVar("Model", bound=BaseModel)


def describe(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "extra_forbidden":
            fields[name] = "unknown field"
        else:
            fields.setdefault(name, item["msg"])
    return fields


def validate(model: type[Model], data: Any, resource: str | None = None) -> Model:
    """The body as `model`; fields it does not know are ignored, whatever they hold (NUL included)."""
    if not isinstance(data, dict):
        raise BadRequest("Input Error - the body must be a JSON object", {"body": {"message": "not an object"}})
    refuse_nul({key: value for key, value in data.items() if key in model.model_fields})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidData(describe(exc), resource) from None


async def json_body(request: web.Request, *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest("Input Error - a JSON body is required", {"body": {"message": "missing"}})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Input Error - the body is not valid JSON", {"body": {"message": "invalid JSON"}}) from None


def refuse_nul(data: Any) -> None:
    """400 naming the first string (value or key) of what will be kept that holds a NUL character.

    PostgreSQL cannot store NUL in text, and no name, option or URI needs one: refused on both databases alike.
    """
    where = _nul_at(data, "")
    if where is not None:
        raise InvalidData({where or "body": "must not contain the NUL character"})


def _nul_at(value: Any, path: str) -> str | None:
    """The path of the first string (value or key) holding a NUL character, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return inner
            found = _nul_at(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


async def body(request: web.Request, model: type[Model], resource: str | None = None) -> Model:
    return validate(model, await json_body(request), resource)


def path_uuid(request: web.Request, name: str, resource: str) -> UUID:
    """A UUID from the path; a malformed one cannot name anything, so it is a 404 like an unknown one."""
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(resource, **{name: raw}) from None
