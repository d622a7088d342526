"""Logging set-up: plain text (the default) or JSON lines, each line about a call tagged with its meeting, its
participant and its SIP Call-ID, so that one grep follows a guest from his link to his hang-up.

The tags live in a context variable: call control sets them when it takes a call (and when it handles that call's
later events), and everything that runs in that context, the SFU's tasks started for the call included, logs with
them. JSON comes from python-json-logger.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

#: the tags of the call the running code is about (empty outside calls)
_call_tags: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("call_tags", default={})  # noqa: B039

TAGS = ("meeting_uuid", "participant", "call_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(call_tags)s"


def tag_call(**tags: str | None) -> None:
    """Add tags (meeting_uuid, participant, call_id) to the running context; None leaves a tag as it is."""
    current = _call_tags.get()
    merged = {**current, **{name: value for name, value in tags.items() if value is not None}}
    if merged != current:
        _call_tags.set(merged)


def call_tags() -> dict[str, str]:
    return dict(_call_tags.get())


class CallTagsFilter(logging.Filter):
    """Puts the call's tags on each record: as attributes (JSON fields) and as one text suffix."""

    def filter(self, record: logging.LogRecord) -> bool:
        tags = _call_tags.get()
        for name in TAGS:
            if name in tags and not hasattr(record, name):
                setattr(record, name, tags[name])
        suffix = " ".join(f"{name}={tags[name]}" for name in TAGS if name in tags)
        record.call_tags = f" [{suffix}]" if suffix else ""
        return True


class _CallJsonFormatter(JsonFormatter):
    def add_fields(
        self, log_record: dict[str, object], record: logging.LogRecord, message_dict: dict[str, object]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record.pop("call_tags", None)  # the text suffix: the JSON line has the fields themselves


def printable(text: str) -> str:
    """SIP text keeps bytes that are not UTF-8 as lone surrogates (signaling.message); in a log line they become
    `\\udcff` escapes, so that every line can be written, sent or stored as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _printable_arguments(record: logging.LogRecord) -> logging.LogRecord:
    args = record.args
    if isinstance(args, tuple) and any(isinstance(arg, str) for arg in args):
        record.args = tuple(printable(arg) if isinstance(arg, str) else arg for arg in args)
    if isinstance(record.msg, str):
        record.msg = printable(record.msg)
    return record


def make_records_printable() -> None:
    """From now on every log record's text arguments are printable (whatever handler takes them: ours, pytest's)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "printable", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _printable_arguments(current(*args, **kwargs))

    factory.printable = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure(level: str, style: Literal["text", "json"]) -> None:
    """The root handler, on standard error, in the chosen style."""
    make_records_printable()
    handler = logging.StreamHandler()
    handler.addFilter(CallTagsFilter())
    if style == "json":
        handler.setFormatter(
            _CallJsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
