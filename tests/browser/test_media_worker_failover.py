"""Chromium through the loss of its media worker: the owner and a guest (the web apps, sip.js) in a meeting whose
room is in a media worker process; the worker is killed (SIGKILL); the server re-INVITEs each browser without SDP,
Chromium offers afresh in the 200 OK (sip.js), the room's new worker answers in the ACK with its own ICE credentials
and DTLS fingerprint, and both see and hear each other again, in the same call. Real RabbitMQ (127.0.0.1:5672)."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any
from uuid import UUID

import pytest

from gateway.app import CALL_CONTROL
from tests.browser.conftest import Browser, Site
from tests.browser.media import tile_mid
from tests.browser.test_media_story import _assert_receiving, _join_as_guest, _join_as_owner
from tests.e2e.workers import (  # noqa: F401 (fixtures)
    exchange_fixture,
    rabbitmq_answers,
    remote_media,
    settings_fixture,
    workers_announced,
    workers_fixture,
)
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if not rabbitmq_answers():
    pytestmark = [*pytestmark, pytest.mark.skip(reason="RabbitMQ is not answering on 127.0.0.1:5672")]


async def test_two_browsers_follow_their_room_to_the_other_worker(
    site: Site, browser: Browser, workers: list[subprocess.Popen[bytes]]
) -> None:
    media = remote_media(site.api)
    await workers_announced(media, 2)
    owner, link = await _join_as_owner(browser, site, "Failover")
    guest = await _join_as_guest(browser, link, "Gina")
    await _assert_receiving(owner, "Gina")
    await _assert_receiving(guest, "Alice")
    (room,) = media.rooms.values()
    lost = room.worker
    ids = sorted(room.participants)
    conferences = site.api.client.app[CALL_CONTROL].conferences
    call_ids = sorted(seat.call_id for seat in conferences.participants(UUID(room.id)))
    assert len(call_ids) == 2
    before = {page: await tile_mid(page, other) for page, other in ((owner, "Gina"), (guest, "Alice"))}

    next(process for process in workers if process.pid == lost.pid).kill()
    await until(lambda: room.worker is not lost and sorted(room.participants) == ids, 20, "both back in the room")
    # each page is still in its call, and now shows the other in a slot of the new worker's
    for page, other in ((owner, "Gina"), (guest, "Alice")):
        assert await page.locator("#meeting").count() == 1
        await until_new_mid(page, other, before[page])
        await _assert_receiving(page, other)
    # the same two SIP dialogs (a new INVITE would be a new Call-ID)
    assert sorted(seat.call_id for seat in conferences.participants(UUID(room.id))) == call_ids


async def until_new_mid(page: Any, other: str, old: str) -> None:
    """The page's tile of `other` shows a slot other than `old` (the one he had on the lost worker)."""
    for _ in range(100):
        if await tile_mid(page, other, wait_s=40) != old:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the tile of {other} still shows the slot it had on the lost worker ({old})")
