"""Asterisk confbridge.conf options: known keys are checked, unknown ones are kept as they came."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.http.errors import InvalidData

VIDEO_MODES = ("sfu", "none", "follow_talker", "last_marked", "first_marked")
_BOOLEANS = {"yes", "no", "true", "false", "on", "off", "1", "0"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError("must be a string, a number or a boolean")


def _boolean(value: Any) -> str:
    text = _text(value).lower()
    if text not in _BOOLEANS:
        raise ValueError("must be yes or no")
    return text


def _natural(value: Any) -> str:
    if isinstance(value, bool) or not (_text(value).isascii() and _text(value).isdigit()):
        raise ValueError("must be a non-negative integer")
    return _text(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return check


BRIDGE_KEYS: dict[str, Callable[[Any], str]] = {
    "type": _choice("bridge"),
    "video_mode": _choice(*VIDEO_MODES),
    "max_members": _natural,
    "record_conference": _boolean,
    "mixing_interval": _choice("10", "20", "40", "80"),
    "internal_sample_rate": _choice("auto", "8000", "12000", "16000", "24000", "32000", "44100", "48000", "96000"),
    "remb_send_interval": _natural,
    "video_update_discard": _natural,
    "enable_events": _boolean,
    "language": _text,
}
USER_KEYS: dict[str, Callable[[Any], str]] = {
    "type": _choice("user"),
    "admin": _boolean,
    "marked": _boolean,
    "startmuted": _boolean,
    "quiet": _boolean,
    "announce_user_count": _boolean,
    "announce_join_leave": _boolean,
    "music_on_hold_when_empty": _boolean,
    "dsp_drop_silence": _boolean,
    "talk_detection_events": _boolean,
    "dtmf_passthrough": _boolean,
    "denoise": _boolean,
    "jitterbuffer": _boolean,
    "wait_marked": _boolean,
    "end_marked": _boolean,
    "send_events": _boolean,
    "echo_events": _boolean,
}
PROFILES = {"wazo_default_bridge": BRIDGE_KEYS, "wazo_default_user": USER_KEYS}
DEFAULTS: dict[str, dict[str, Any]] = {
    "wazo_default_bridge": {"type": "bridge", "video_mode": "sfu", "enable_events": "yes"},
    "wazo_default_user": {"type": "user", "dsp_drop_silence": "yes", "talk_detection_events": "yes"},
}


def parse_options(profile: str, data: Any) -> dict[str, Any]:
    """Accept {"options": {...}} or, as the seed document writes it, the options at the top level."""
    if not isinstance(data, dict):
        raise InvalidData({"options": "must be an object"})
    options = data["options"] if set(data) == {"options"} else data
    if not isinstance(options, dict):
        raise InvalidData({"options": "must be an object"})
    known = PROFILES[profile]
    problems: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key or len(key) > 128:
            problems[f"options.{key}"] = "option names are non-empty strings of at most 128 characters"
            continue
        try:
            known[key](value) if key in known else _text(value)
        except ValueError as exc:
            problems[f"options.{key}"] = str(exc)
    if problems:
        raise InvalidData(problems, "confbridge")
    return options
