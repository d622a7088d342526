"""Lobby bodies: a guest asks to enter under a name."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class AuthorizationCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    guest_name: Annotated[StrictStr, Field(min_length=1, max_length=512)]
