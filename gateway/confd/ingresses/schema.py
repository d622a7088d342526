"""HTTP ingress bodies: the public base URI guests reach the server at."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr


def _http_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URI")
    return value


HttpUri = Annotated[StrictStr, Field(min_length=1, max_length=1024), AfterValidator(_http_uri)]


class IngressBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uri: HttpUri
