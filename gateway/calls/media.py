"""The SFU's settings from config.yaml's `media:` section."""

from __future__ import annotations

import socket

from gateway.config import Settings
from sfu.settings import MediaSettings


def machine_addresses() -> tuple[str, ...]:
    """The machine's own IPv4 addresses (loopback last), for ICE and RTP when none are configured."""
    found: list[str] = []
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = str(sockaddr[0])
            if address not in found and not address.startswith("127."):
                found.append(address)
    except OSError:
        pass
    return (*found, "127.0.0.1")


def media_settings(settings: Settings) -> MediaSettings:
    media = settings.media
    return MediaSettings(
        host_addresses=tuple(media.host_addresses) or machine_addresses(),
        public_address=media.public_address,
        rtp_port_min=media.rtp_port_min,
        rtp_port_max=media.rtp_port_max,
        ice_servers=tuple(media.ice_servers),
        allow_plain_rtp=media.allow_plain_rtp,
    )
