"""Auth bodies."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expiration: Annotated[StrictInt, Field(ge=1)] | None = None


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    parent_uuid: UUID | None = None
