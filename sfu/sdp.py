"""SDP helpers on top of aiortc's parser: what aiortc does not do for us."""

from __future__ import annotations

import ipaddress

from aiortc import sdp as aiortc_sdp

from .errors import SdpError


def parse(text: str) -> aiortc_sdp.SessionDescription:
    try:
        return aiortc_sdp.SessionDescription.parse(_without_unmapped_fmtp(text))
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError on bad input
        raise SdpError(f"unparsable SDP: {exc}") from exc


def _without_unmapped_fmtp(text: str) -> str:
    """The SDP less its `a=fmtp` lines for payload types that no `a=rtpmap` of their m-section names. Phones write
    them for static types (linphone: `a=fmtp:18 annexb=yes` for G.729 without its rtpmap), which RFC 4566 allows
    and aiortc's parser fails on; what they say concerns codecs we take from the static table, without parameters."""
    if "a=fmtp:" not in text:
        return text
    sections: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    kept: list[str] = []
    for section in sections:
        mapped = {line[9:].split(" ", 1)[0] for line in section if line.startswith("a=rtpmap:")}
        kept += [line for line in section if not line.startswith("a=fmtp:") or line[7:].split(" ", 1)[0] in mapped]
    return "".join(kept)


def primary_ssrc(media: aiortc_sdp.MediaDescription) -> int | None:
    """The media SSRC a keyframe request must name: the first of `a=ssrc-group:FID`, else the first `a=ssrc`."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    if media.ssrc:
        return int(media.ssrc[0].ssrc)
    return None


def media_destination(host: str | None, port: int) -> tuple[str, int] | None:
    """Where plain RTP goes, from an SDP's address and port, or None (then the peer's own packets tell: symmetric
    RTP): a host that is not an IP literal (sending would resolve it, blocking, on every packet), the hold address
    0.0.0.0 or ::, or a port outside 1-65535 (the socket would refuse it and close) give None."""
    if not host or not 0 < port < 65536:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if address.is_unspecified else (host, port)


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


def align_bundled_setup(text: str) -> str:
    """Give every m-line of the BUNDLE group the DTLS role (``a=setup``) of the group's tagged (first) m-line.

    Bundled m-lines share one DTLS association, whose role only the tagged m-line decides (RFC 8843 section 7,
    RFC 8842 section 5). aiortc applies the role of each m-line in turn to the one shared transport, so a peer
    whose answer gives a bundled m-line another role (an aiortc client adding m-lines of a kind its first offer
    lacked answers them ``active`` while the rest say ``passive``) flips the role mid-handshake: both ends then
    derive the same SRTP keys for opposite directions and every packet fails authentication, both ways.
    """
    lines = text.split("\r\n")
    bundle: list[str] = []
    for line in lines:
        if line.startswith("a=group:BUNDLE "):
            bundle = line[len("a=group:BUNDLE ") :].split()
            break
    if len(bundle) < 2:
        return text
    # split into the session part and one list of line indexes per m-line
    sections: list[list[int]] = []
    for index, line in enumerate(lines):
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(index)
    mids: dict[str, list[int]] = {}
    for section in sections:
        for index in section:
            if lines[index].startswith("a=mid:"):
                mids[lines[index][len("a=mid:") :].strip()] = section
    tagged = mids.get(bundle[0])
    if tagged is None:
        return text
    role = next((lines[i] for i in tagged if lines[i].startswith("a=setup:")), None)
    if role is None:
        return text
    for mid in bundle[1:]:
        for index in mids.get(mid, []):
            if lines[index].startswith("a=setup:"):
                lines[index] = role
    return "\r\n".join(lines)


def slides_mids(text: str) -> set[str]:
    """The mids of the m-sections marked ``a=content:slides`` (RFC 4796): a participant's shared screen."""
    mids: set[str] = set()
    for section in text.split("\nm=")[1:]:
        lines = [line.strip() for line in section.split("\n")]
        mid = next((line[len("a=mid:") :] for line in lines if line.startswith("a=mid:")), None)
        if mid is not None and "a=content:slides" in lines:
            mids.add(mid)
    return mids


def rtx_ssrc(media: aiortc_sdp.MediaDescription) -> int | None:
    """The retransmission SSRC of a sending m-section (the second of `a=ssrc-group:FID`), or None."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) > 1:
            return int(group.items[1])
    return None


def set_labels(text: str, labels: dict[str, str]) -> str:
    """Give the m-sections whose mid is in `labels` an ``a=label`` (RFC 4574) with that value, in place of any they had.

    Wazo's SDK maps each received video to a participant by the label of its m-line (Asterisk's ConfBridge labels
    each stream with the channel it comes from)."""
    if not labels:
        return text
    lines = text.split("\r\n")
    out: list[str] = []
    section_mid: str | None = None
    for line in lines:
        if line.startswith("m="):
            section_mid = None
        elif line.startswith("a=mid:"):
            section_mid = line[len("a=mid:") :].strip()
            out.append(line)
            if section_mid in labels:
                out.append(f"a=label:{labels[section_mid]}")
            continue
        elif line.startswith("a=label:") and section_mid in labels:
            continue  # replaced by the one written after a=mid
        out.append(line)
    return "\r\n".join(out)
