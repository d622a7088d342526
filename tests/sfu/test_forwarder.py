"""Video slots switching sources: hold the previous source until the new one's keyframe, timestamps continuous."""

from __future__ import annotations

import pytest

from sfu import forwarder
from sfu.forwarder import VideoSlot, VideoSource

KEY = b"\x10\x02\x00\x9d\x01\x2a"  # VP8 frame tag with the key-frame bit clear
DELTA = b"\x11\x02\x00"


def drain(slot: VideoSlot) -> list[tuple[bytes, int]]:
    out = []
    while not slot.track.queue.empty():
        packet = slot.track.queue.get_nowait()
        assert packet is not None
        out.append((bytes(packet), int(packet.pts or 0)))
    return out


async def test_slot_waits_for_keyframes_and_switches_cleanly() -> None:
    requests = {"a": 0, "b": 0}
    a = VideoSource("a", "VP8", lambda: requests.__setitem__("a", requests["a"] + 1))
    b = VideoSource("b", "VP8", lambda: requests.__setitem__("b", requests["b"] + 1))
    slot = VideoSlot(0, "3", "VP8")
    slot.active = True
    assert slot.accepts(a) and not slot.accepts(VideoSource("h", "H264", lambda: None))

    slot.assign(a)
    assert requests["a"] == 1  # a keyframe is asked for at once
    a.on_frame("VP8", DELTA, 0)
    assert drain(slot) == []  # nothing before a keyframe
    a.on_frame("VP8", KEY, 3000)
    a.on_frame("VP8", DELTA, 6000)
    assert [d for d, _ in drain(slot)] == [KEY, DELTA]

    slot.assign(b)
    assert requests["b"] == 1 and slot.pending is b and slot.current is a
    b.on_frame("VP8", DELTA, 900000)
    a.on_frame("VP8", DELTA, 9000)  # the previous source keeps the picture alive meanwhile
    sent = drain(slot)
    assert [d for d, _ in sent] == [DELTA] and sent[0][1] == 6000
    b.on_frame("VP8", KEY, 903000)
    a.on_frame("VP8", DELTA, 12000)  # ignored from now on
    b.on_frame("VP8", DELTA, 906000)
    sent = drain(slot)
    assert [d for d, _ in sent] == [KEY, DELTA]
    assert slot.current is b and slot.pending is None and a.slots == set()
    # timestamps continue from the last frame sent, whatever the new source's clock
    assert sent[0][1] == 6000 + 3000 and sent[1][1] == 6000 + 6000

    # a subscriber's PLI goes to the source shown
    before = requests["b"]
    slot.on_keyframe_request()
    assert requests["b"] == before + 1 or requests["b"] == before  # rate limited to one per 300 ms

    # the shown source leaves: the last picture stays until another source's keyframe
    b.close()
    assert slot.current is None
    # a's keyframe came moments ago: the slot starts from it (and the frames since) at once, without asking
    before = requests["a"]
    slot.assign(a)
    assert slot.current is a and slot.pending is None and requests["a"] == before
    assert [d for d, _ in drain(slot)] == [KEY, DELTA, DELTA, DELTA]
    a.on_frame("VP8", DELTA, 15000)
    assert [d for d, _ in drain(slot)] == [DELTA]


async def test_a_keyframe_too_old_is_not_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forwarder, "RECENT_KEYFRAME_AGE", 0.0)
    requests = []
    a = VideoSource("a", "VP8", lambda: requests.append(1))
    a.on_frame("VP8", KEY, 0)
    a.on_frame("VP8", DELTA, 3000)
    slot = VideoSlot(0, "3", "VP8")
    slot.active = True
    slot.assign(a)
    assert slot.pending is a and requests == [1] and drain(slot) == []
    a.on_frame("VP8", DELTA, 6000)
    a.on_frame("VP8", KEY, 9000)
    assert [d for d, _ in drain(slot)] == [KEY]
