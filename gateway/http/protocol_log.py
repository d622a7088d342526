"""A request aiohttp cannot parse (a NUL in a header, a line too long, a bad request line) logged as one line.

aiohttp answers such a request 400 itself, before any handler or middleware runs, and logs it on the
`aiohttp.server` logger at ERROR with the parser's Traceback (about 1 KB a request, and nothing on our side to
fix). It offers no hook for this, so a logging filter on that logger rewrites exactly those records: a warning
naming the source and the parser's reason, without the offending bytes (they may carry credentials).
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
# The parsers' reasons end in a repr of what they choked on: "Invalid header value char: b'...'".
_EXCERPT = re.compile(r":?\s*b?['\"].*$")


class ParseErrorAsOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        lines = str(error.message).strip().splitlines()
        reason = _EXCERPT.sub("", lines[0]).rstrip(": ") if lines else ""
        where = record.getMessage().removeprefix("Error handling request").strip()
        record.msg = "bad HTTP request %s: %s %s (%s)"
        record.args = (where, error.code, reason or "unparsable", type(error).__name__)
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.WARNING:  # the client's fault, not the server's; debug lines stay debug
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def log_parse_errors_as_one_line() -> None:
    """Install the filter once on aiohttp's server logger (every application in the process shares it)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(existing, ParseErrorAsOneLine) for existing in logger.filters):
        logger.addFilter(ParseErrorAsOneLine())
