"""SDP helpers on top of aiortc's parser: what aiortc does not do for us."""

from __future__ import annotations

from aiortc import sdp as aiortc_sdp

from .errors import SdpError


def parse(text: str) -> aiortc_sdp.SessionDescription:
    try:
        return aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError on bad input
        raise SdpError(f"unparsable SDP: {exc}") from exc


def primary_ssrc(media: aiortc_sdp.MediaDescription) -> int | None:
    """The media SSRC a keyframe request must name: the first of `a=ssrc-group:FID`, else the first `a=ssrc`."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    if media.ssrc:
        return int(media.ssrc[0].ssrc)
    return None


def announce_address(text: str, host_addresses: tuple[str, ...], public_address: str | None) -> str:
    """Replace the host addresses by the public one in candidates and connection lines (1:1 NAT)."""
    if not public_address:
        return text
    lines = []
    for line in text.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line.split(" ")
            if len(fields) > 5 and fields[4] in host_addresses:
                fields[4] = public_address
                line = " ".join(fields)
        elif line.startswith(("c=IN IP4 ", "c=IN IP6 ")):
            address = line.split(" ")[2]
            if address in host_addresses:
                family = "IP6" if ":" in public_address else "IP4"
                line = f"c=IN {family} {public_address}"
        lines.append(line)
    return "\r\n".join(lines)
