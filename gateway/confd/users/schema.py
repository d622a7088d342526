"""User bodies. Unknown fields are ignored, as confd does, so a client may PUT back what it read."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr

# No white space, colon or NUL. White space is spelled out (Python's str.isspace() set, and U+FEFF) rather than
# written `\s`, whose meaning differs between regex engines (Python, Rust, ECMA-262): the API document states this
# very pattern for its clients' validators, and a test holds the two equal.
USERNAME_PATTERN = r"^[^\x00\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff:]+$"


def _username(value: str) -> str:
    if not re.fullmatch(USERNAME_PATTERN, value):
        raise ValueError("no white space, colon or NUL")
    return value


Username = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_username)]
Password = Annotated[StrictStr, Field(min_length=1, max_length=1024)]
Name = Annotated[StrictStr, Field(max_length=128)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: Username
    password: Password
    firstname: Name | None = None
    lastname: Name | None = None
    admin: StrictBool = False


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: Username | None = None
    password: Password | None = None
    firstname: Name | None = None
    lastname: Name | None = None
    admin: StrictBool | None = None
