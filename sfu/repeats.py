"""Packets that come twice on the way in: a retransmission of a packet that had arrived after all (its NACK crossed
it), or a datagram the network duplicated. Forwarded again, a subscriber would get the same packet twice, and the
statistics would count it twice: they are dropped before either sees them."""

from __future__ import annotations

#: sequence numbers remembered per stream (a few seconds of video: retransmissions answer within one round trip)
WINDOW = 1024
#: streams remembered (a simulcast camera, its retransmission streams and a shared screen, with room for restarts)
STREAMS = 16


class RepeatFilter:
    def __init__(self) -> None:
        #: per SSRC, the latest sequence number seen at each position of the window (-1: none yet)
        self._streams: dict[int, list[int]] = {}

    def repeated(self, ssrc: int, sequence: int) -> bool:
        """Whether packet `sequence` of stream `ssrc` was seen already (else it is remembered now)."""
        seen = self._streams.get(ssrc)
        if seen is None:
            if len(self._streams) >= STREAMS:
                del self._streams[next(iter(self._streams))]
            seen = self._streams[ssrc] = [-1] * WINDOW
        index = sequence % WINDOW
        if seen[index] == sequence:
            return True
        seen[index] = sequence
        return False
