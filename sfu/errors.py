"""Typed errors the gateway maps to SIP responses."""


class SfuError(Exception):
    """Base class of the media layer's errors."""


class RoomFull(SfuError):
    """The room already holds its maximum number of participants (SIP: 486/503 with a reason)."""

    def __init__(self, room_id: str, max_participants: int) -> None:
        super().__init__(f"room {room_id} is full ({max_participants} participants)")
        self.room_id = room_id
        self.max_participants = max_participants


class RoomClosed(SfuError):
    """The room was closed; nobody can join it any more."""


class ParticipantClosed(SfuError):
    """The participant has left; its media can no longer be renegotiated."""


class SdpError(SfuError):
    """An SDP offer or answer could not be used (SIP: 488 Not Acceptable Here)."""
