"""Room updates for participants, as Asterisk ConfBridge events in SIP MESSAGE bodies (JSON).

Wazo's SDK reads `type` (ConfbridgeWelcome, ConfbridgeJoin, ConfbridgeLeave, ConfbridgeTalking) and matches a
channel to its call with `channelvars.WAZO_SIP_CALL_ID`. Ours, which the SDK ignores: ConfbridgeVideoSlots (which
participant each of a subscriber's video slots, by SDP mid, shows, so an app can put names on tiles, and
`video_slots_paused`, the mids of those paused because his link has no room for them),
ConfbridgeVideoMute/Unmute and a channel's `video_muted` (a camera turned off), ConfbridgeHandRaised/Lowered and a
channel's `hand_raised`, ConfbridgeChat (a chat line), and, from the apps, the
ParticipantState MESSAGE in which an app tells its own microphone and camera state, the Pin MESSAGE in which it
asks for someone's video whoever speaks, and the Chat MESSAGE (a phone's text/plain MESSAGE is chat too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID


class Member(Protocol):
    @property
    def participant_id(self) -> str: ...
    @property
    def caller_name(self) -> str: ...
    @property
    def caller_number(self) -> str: ...
    @property
    def call_id(self) -> str: ...
    @property
    def user_uuid(self) -> UUID | None: ...
    @property
    def talking(self) -> bool: ...
    @property
    def muted(self) -> bool: ...
    @property
    def video_muted(self) -> bool: ...
    @property
    def hand_raised(self) -> bool: ...


def channel(member: Member) -> dict[str, Any]:
    return {
        "id": member.participant_id,
        "caller": {"name": member.caller_name, "number": member.caller_number},
        "connected": {"name": member.caller_name, "number": member.caller_number},
        "talking_status": "on" if member.talking else "off",
        "muted": member.muted,
        "video_muted": member.video_muted,
        "hand_raised": member.hand_raised,
        "user_uuid": str(member.user_uuid) if member.user_uuid else None,
        "channelvars": {"WAZO_SIP_CALL_ID": member.call_id},
    }


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def bridge(meeting_uuid: UUID, name: str) -> dict[str, str]:
    return {"id": str(meeting_uuid), "name": name}


def welcome(bridge_info: dict[str, str], me: Member, members: Sequence[Member]) -> bytes:
    # `me` first in `channels`: Wazo's SDK puts a video on a remote participant's tile only once it knows its own
    # (a remote channel listed before it is left without video)
    others = [member for member in members if member.participant_id != me.participant_id]
    return _encode(
        {
            "type": "ConfbridgeWelcome",
            "bridge": bridge_info,
            "channel": channel(me),
            "channels": [channel(me)] + [channel(member) for member in others],
        }
    )


def _about(kind: str, bridge_info: dict[str, str], member: Member) -> bytes:
    # As in Asterisk, `channels` is a list in every event; `channel` names the one concerned.
    described = channel(member)
    return _encode({"type": kind, "bridge": bridge_info, "channel": described, "channels": [described]})


def joined(bridge_info: dict[str, str], member: Member) -> bytes:
    return _about("ConfbridgeJoin", bridge_info, member)


def left(bridge_info: dict[str, str], member: Member) -> bytes:
    return _about("ConfbridgeLeave", bridge_info, member)


def talking(bridge_info: dict[str, str], member: Member) -> bytes:
    return _about("ConfbridgeTalking", bridge_info, member)


def muted(bridge_info: dict[str, str], member: Member) -> bytes:
    return _about("ConfbridgeMute" if member.muted else "ConfbridgeUnmute", bridge_info, member)


#: a chat line longer than this is cut (a MESSAGE must stay well within a UDP datagram)
CHAT_MAX_CHARACTERS = 2000


def chat_text(text: str) -> str:
    """A chat line as the room passes it on: printable, trimmed, cut at CHAT_MAX_CHARACTERS."""
    kept = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t").strip()
    return kept[:CHAT_MAX_CHARACTERS]


def chat(bridge_info: dict[str, str], member: Member, text: str) -> bytes:
    """Ours: a chat line, with who wrote it (his channel, as in every event) and when."""
    described = channel(member)
    return _encode(
        {"type": "ConfbridgeChat", "bridge": bridge_info, "channel": described, "channels": [described],
         "text": text, "timestamp": time.time()}
    )  # fmt: skip


def hand(bridge_info: dict[str, str], member: Member) -> bytes:
    """Ours: a participant raised or lowered his hand."""
    return _about("ConfbridgeHandRaised" if member.hand_raised else "ConfbridgeHandLowered", bridge_info, member)


def video_muted(bridge_info: dict[str, str], member: Member) -> bytes:
    """Ours, beside ConfbridgeMute: a participant's camera turned off or on (apps show an avatar meanwhile)."""
    return _about("ConfbridgeVideoMute" if member.video_muted else "ConfbridgeVideoUnmute", bridge_info, member)


@dataclass(frozen=True)
class AppMessage:
    """What an app says in a MESSAGE: ParticipantState (muted, video_muted, hand_raised; None: not said), Chat (`text`)
    or Pin (`pinned`: the channel id whose video it wants in a slot whoever speaks, or None to unpin)."""

    type: str
    muted: bool | None = None
    video_muted: bool | None = None
    hand_raised: bool | None = None
    pinned: str | None = None
    text: str | None = None


def app_message(body: bytes) -> AppMessage | None:
    """The app's message in a MESSAGE body, or None if the body is not one of ours."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict):
        return None

    def flag(name: str) -> bool | None:
        value = message.get(name)
        return value if isinstance(value, bool) else None

    if message.get("type") == "ParticipantState":
        return AppMessage(
            "ParticipantState", muted=flag("muted"), video_muted=flag("video_muted"), hand_raised=flag("hand_raised")
        )
    if message.get("type") == "Chat":
        text = message.get("text")
        return AppMessage("Chat", text=text if isinstance(text, str) else None)
    if message.get("type") == "Pin":
        channel = message.get("channel")
        return AppMessage("Pin", pinned=channel if isinstance(channel, str) and channel else None)
    return None


def video_slots(
    bridge_info: dict[str, str], slots: dict[str, str | None], screens: Sequence[str] = (), paused: Sequence[str] = ()
) -> bytes:
    """Who each of a subscriber's slots (by mid) shows, which of them show a shared screen (`screen_slots`), and which
    are paused because the subscriber's link has no room for them now (the app shows those tiles as paused, not
    frozen)."""
    return _encode(
        {
            "type": "ConfbridgeVideoSlots",
            "bridge": bridge_info,
            "video_slots": slots,
            "screen_slots": list(screens),
            "video_slots_paused": list(paused),
        }
    )
