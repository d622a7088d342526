"""User bodies. Unknown fields are ignored, as confd does, so a client may PUT back what it read."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Username = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\s:]+$")]
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
