"""What the media layer needs from the configuration, as plain dataclasses (the gateway fills them from config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MediaSettings:
    """Process-wide media settings (config.yaml `media:`)."""

    #: addresses offered in ICE candidates and plain-RTP SDP; empty: 127.0.0.1 only
    host_addresses: tuple[str, ...] = ()
    #: address announced instead of the host addresses (1:1 NAT), or None
    public_address: str | None = None
    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    #: STUN/TURN servers for clients; the server itself only offers host candidates
    ice_servers: tuple[dict[str, Any], ...] = ()
    #: phones may send plain RTP (RTP/AVP); False: only SDES-SRTP (RTP/SAVP) is accepted from them
    allow_plain_rtp: bool = True

    def addresses(self) -> tuple[str, ...]:
        return self.host_addresses or ("127.0.0.1",)


@dataclass(frozen=True)
class RoomOptions:
    """Per-room options, given when the room is created (bridge options already applied by the caller)."""

    max_participants: int = 100
    #: False: audio only (confbridge video_mode=none); new participants get no video slots
    video: bool = True
    #: video slots per subscriber (confbridge follow_talker: 1)
    last_n: int = 4
    #: how many of the loudest speakers are mixed (config.yaml media.mixed_speakers)
    mixed_speakers: int = 3
    #: video codecs in order of preference; a slot carries one of them, sources in another codec are skipped
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    #: RFC 6464 level (-dBov, 0 loudest .. 127 silent) at or below which a packet counts as speech
    speech_level: int = 50
    talk_start_ms: int = 60
    talk_stop_ms: int = 800
    extra: dict[str, Any] = field(default_factory=dict)
