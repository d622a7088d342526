"""HTTP ingress bodies: the public base URI guests reach the server at."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

# http(s)://[userinfo@]host[:port][/path?query#fragment], the host a name or a bracketed IPv6 literal. A regular
# expression rather than urllib's parser so that the API document can state the very same rule (a test holds the
# two equal): what one accepts, the other does.
HTTP_URI_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([^/?#@\[\]\x00]*@)?([^/?#@:\[\]\x00]+|\[[0-9A-Fa-f:.]+\])(:[0-9]*)?([/?#][^\x00]*)?$"
)


def _http_uri(value: str) -> str:
    if not re.fullmatch(HTTP_URI_PATTERN, value):
        raise ValueError("must be an absolute http:// or https:// URI")
    return value


HttpUri = Annotated[StrictStr, Field(min_length=1, max_length=1024), AfterValidator(_http_uri)]


class IngressBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uri: HttpUri
