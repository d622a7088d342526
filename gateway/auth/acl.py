"""Wazo ACLs: dotted names; `*` matches one segment, `#` any number; `me` also stands for the caller's UUID."""

from __future__ import annotations

import re
from functools import lru_cache

ADMIN_ACL = ("#",)
USER_ACL = (
    "confd.users.me.#",
    "calld.users.me.#",
    "auth.users.me.#",
    "websocketd",
    "events.users.me.#",
)


@lru_cache(maxsize=256)
def _pattern(acl: str) -> re.Pattern[str]:
    parts = []
    for segment in acl.split("."):
        if segment == "#":
            parts.append(r"[^\s]*")
        elif segment == "*":
            parts.append(r"[^.\s]*")
        else:
            parts.append(re.escape(segment))
    return re.compile(r"\.".join(parts) + r"\Z")


def _expand(acl: str, user_uuid: str) -> str:
    return ".".join(user_uuid if segment == "me" else segment for segment in acl.split("."))


def grants(acls: tuple[str, ...] | list[str], required: str, user_uuid: str | None = None) -> bool:
    for acl in acls:
        if _pattern(acl).match(required):
            return True
        if user_uuid and ".me." in f".{acl}." and _pattern(_expand(acl, user_uuid)).match(required):
            return True
    return False
