"""Secrets out of the access log: a meeting's UUID is its guest link, a token is a login.

A guest joins with nothing but the meeting's UUID (`/guests/#meeting=...` in the browser, then the guest API paths),
so whoever reads an access log line holding it could join; users' tokens reach the URL in the events WebSocket's
query (`/api/websocketd/?token=...`, as wazo-websocketd takes them) and in the token check paths
(`/api/auth/0.1/token/{token}`). The access log keeps the first 8 hex digits of a meeting UUID, enough to follow
one meeting through the log and far too few to guess the link (the rest is 90 random bits), and no part of a token.
Done as a filter on the access logger, so it holds whatever format or handler an operator configures.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "aiohttp.access"

_MEETING_UUID = re.compile(r"(meetings/)([0-9a-fA-F]{8})-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_QUERY_TOKEN = re.compile(r"([?&](?:token|access_token)=)[^&\s\"]*", re.IGNORECASE)
_PATH_TOKEN = re.compile(r"(/api/auth/0\.1/token/)[^/?\s\"]+")


def redact(line: str) -> str:
    """`line` with meeting UUIDs shortened and tokens removed."""
    line = _MEETING_UUID.sub(r"\1\2-…", line)
    line = _QUERY_TOKEN.sub(r"\1[redacted]", line)
    return _PATH_TOKEN.sub(r"\1[redacted]", line)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message, and the request fields aiohttp attaches to it, through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        # aiohttp also hands each field of the line as a record attribute (for structured formatters)
        line = getattr(record, "first_request_line", None)
        if isinstance(line, str):
            record.first_request_line = redact(line)
        headers = getattr(record, "request_header", None)
        if isinstance(headers, dict):
            record.request_header = {name: redact(value) for name, value in headers.items()}
        return True


def redact_access_log() -> None:
    """Install the filter on aiohttp's access logger, once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
        logger.addFilter(RedactSecrets())
