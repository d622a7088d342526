"""The meetings list says who is in each meeting right now ("Live now: N"), kept current by the events
WebSocket as people join and leave."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, Site, sign_in
from tests.browser.test_media_story import _join_as_guest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_live_now_follows_guests_joining_and_leaving(media_site: Site, browser: Browser) -> None:
    _, token = await media_site.api.create_user("alice", "alice-password")
    meeting = await media_site.api.create_meeting(token, name="Open office")
    quiet = await media_site.api.create_meeting(token, name="Quiet room")
    owner = await browser.page("owner", viewport=(390, 844), mobile=True)
    await sign_in(owner, media_site, "alice", "alice-password")
    badge = owner.locator(f"[data-live='{meeting['uuid']}']")
    await badge.wait_for(state="attached")
    assert await badge.is_hidden()

    guest = await _join_as_guest(browser, media_site.guest_link(meeting["uuid"]), "Gina")
    await owner.wait_for_selector(f"[data-live='{meeting['uuid']}'][data-count='1']:not([hidden])")
    assert await badge.inner_text() == "Live now: 1"
    assert await owner.locator(f"[data-live='{quiet['uuid']}']").is_hidden()
    await browser.shot(owner, "phone-list-live-now")
    await owner.set_viewport_size({"width": 1280, "height": 800})
    await browser.shot(owner, "desktop-list-live-now")

    await guest.click("#leave")
    await guest.wait_for_selector("[data-page=left]")
    await owner.wait_for_selector(f"[data-live='{meeting['uuid']}'][data-count='0'][hidden]", state="attached")
