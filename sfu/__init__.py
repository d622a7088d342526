"""Media: rooms, participants, WebRTC and plain-RTP legs, the audio mixer and the video forwarder.

Never imports `gateway` or `signaling`: SDP strings in, SDP strings out.
"""

from .errors import ParticipantClosed, RoomClosed, RoomFull, SdpError, SfuError
from .participant import Participant
from .room import Room
from .server import SFU
from .settings import MediaSettings, RoomOptions

__all__ = [
    "SFU",
    "MediaSettings",
    "Participant",
    "ParticipantClosed",
    "Room",
    "RoomClosed",
    "RoomFull",
    "RoomOptions",
    "SdpError",
    "SfuError",
]
