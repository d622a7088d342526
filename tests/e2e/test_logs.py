"""JSON log lines from a real server process: every line parses, and the lines about a guest's call carry the
meeting, the participant and the Call-ID, so one grep on the meeting's UUID prefix follows him from link to hang-up,
where one line sums up the call's quality."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from bench.serving import serving
from tests.e2e.served import guest, join, make_meeting
from tests.waiting import until

pytestmark = pytest.mark.slow


async def test_json_lines_follow_a_guest_from_link_to_hang_up(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    async with (
        aiohttp.ClientSession() as session,
        serving(tmp_path, f"sqlite:///{tmp_path}/m.db", log, MEDIA__HOST_ADDRESSES="[127.0.0.1]",
                LOGGING__LEVEL="INFO", LOGGING__FORMAT="json") as server,
    ):  # fmt: skip
        meeting = await make_meeting(session, server.base)
        async with session.get(f"{server.base}/api/confd/1.1/guests/me/meetings/{meeting['uuid']}") as link:
            assert link.status == 200
        member = await guest(session, server, meeting, "red")
        try:
            await join(member)
            assert member.call is not None
            call_id = member.call.call_id
            await until(lambda: member.media.pc.connectionState == "connected", 10, "the media connected")
            await asyncio.sleep(1.0)  # some media both ways, for the quality line
            await member.sip.bye(member.call)
            await asyncio.sleep(1.0)
        finally:
            await member.close()

    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    prefix = meeting["uuid"][:8]
    followed = [record for record in records if prefix in json.dumps(record)]
    messages = [record["message"] for record in followed]
    assert any("/guests/me/meetings/" in message for message in messages), messages  # the link opened (shortened)
    invite = next(record for record in followed if record["message"].startswith("INVITE meeting-guest"))
    left = next(record for record in followed if record["message"].startswith("left the meeting"))
    for record in (invite, left):
        assert record["meeting_uuid"] == meeting["uuid"]
        assert record["call_id"] == call_id
        assert record["participant"]
    assert invite["message"].endswith(": joined")
    # at the call's end, one line sums up its quality, tagged like the others
    (quality,) = [record for record in followed if record["message"].startswith("call quality: ")]
    assert records.index(quality) > records.index(left)
    assert quality["meeting_uuid"] == meeting["uuid"] and quality["call_id"] == call_id and quality["participant"]
    summary = quality["call_quality"]
    assert summary["duration"] > 0 and summary["audio_in"]["packets"] > 0 and summary["audio_in"]["packets_lost"] == 0
    assert summary["audio_out"]["packets"] > 0 and "audio in " in quality["message"]
    assert summary["video_in"]["packets"] > 0 and summary["video_in"]["resolution"] == "160x120"
    assert meeting["uuid"] not in json.dumps([r for r in records if r["logger"] == "aiohttp.access"])
