"""Meeting bodies. Read-only fields a client sends back (uuid, exten, links ...) are ignored, as confd does."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

MeetingName = Annotated[StrictStr, Field(min_length=1, max_length=512)]


class MeetingCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: MeetingName
    owner_uuids: list[UUID] = Field(default_factory=list, max_length=100)
    persistent: StrictBool = False
    require_authorization: StrictBool = False


class MeetingUpdate(BaseModel):
    """PUT: fields left out keep their value; those given are checked as on creation."""

    model_config = ConfigDict(extra="ignore")

    name: MeetingName | None = None
    owner_uuids: list[UUID] | None = Field(None, max_length=100)
    persistent: StrictBool | None = None
    require_authorization: StrictBool | None = None
