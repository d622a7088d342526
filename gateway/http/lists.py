"""Wazo list conventions: recurse, search, order, direction, limit, offset; answers {"total", "items"}."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.http.errors import InvalidData

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class ListParams:
    recurse: bool = False
    search: str | None = None
    order: str | None = None
    direction: str = "asc"
    limit: int | None = None
    offset: int = 0


def _boolean(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidData({name: "must be true or false"})


MAX_NATURAL = 2**31 - 1


def _natural(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_NATURAL:
        raise InvalidData({name: f"must be an integer from 0 to {MAX_NATURAL}"})
    return int(raw)


def parse_list_params(query: Mapping[str, str], orderable: Iterable[str]) -> ListParams:
    orderable = tuple(orderable)
    order = query.get("order")
    if order is not None and order not in orderable:
        raise InvalidData({"order": f"must be one of {', '.join(orderable)}"})
    direction = query.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise InvalidData({"direction": "must be asc or desc"})
    search = query.get("search")
    if search is not None and (len(search) > 512 or "\x00" in search):
        raise InvalidData({"search": "at most 512 characters, and no NUL"})
    return ListParams(
        recurse=_boolean("recurse", query["recurse"]) if "recurse" in query else False,
        search=search or None,
        order=order,
        direction=direction,
        limit=_natural("limit", query["limit"]) if "limit" in query else None,
        offset=_natural("offset", query["offset"]) if "offset" in query else 0,
    )
