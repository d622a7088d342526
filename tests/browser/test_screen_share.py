"""Screen sharing between three browsers: a guest presents her screen (a second video m-line of hers, marked
a=content:slides, added by re-INVITE); the others see it large, labelled, while still seeing her camera; she stops,
and the layout comes back; she presents again and leaves, which ends her share for everyone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.browser.conftest import Browser, Site
from tests.browser.media import lit_pixels, received
from tests.browser.test_media_story import _assert_receiving, _join_as_guest, _join_as_owner

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREEN_TILE = "#tiles .tile.screen[data-presenter='Gina']"


async def _assert_screen_shown(page: Any) -> None:
    """The presented screen is the large tile, named, with frames coming and a picture (not black)."""
    tile = page.locator(SCREEN_TILE)
    await tile.wait_for(timeout=15_000)
    assert await tile.locator(".name").inner_text() == "Gina is presenting"
    assert "main" in (await tile.get_attribute("class") or "").split()
    mid = await tile.get_attribute("data-mid")
    assert mid
    await page.wait_for_function(
        f"document.querySelector('.tile[data-mid=\"{mid}\"]').classList.contains('has-video')", timeout=10_000
    )
    # a screen is captured when it changes, at a few frames a second: give a loaded machine some seconds
    before = (await received(page))["video"].get(mid, {}).get("framesDecoded", 0)
    after = before
    for _ in range(10):
        await asyncio.sleep(0.5)
        after = (await received(page))["video"].get(mid, {}).get("framesDecoded", 0)
        if after > before:
            break
    assert after > before > 0, f"frames decoded on the screen's slot {mid}: {before} then {after}"
    lit = await lit_pixels(page, mid)
    assert lit > 0.2, f"the presented screen is black ({lit:.0%} of its pixels lit)"
    # the screen is shown wider than any camera tile of the strip
    box = await tile.bounding_box()
    strip = await page.locator("#strip .tile").first.bounding_box()
    assert box and strip and box["width"] > strip["width"] * 1.5, (box, strip)


async def test_a_guest_presents_her_screen_stops_and_leaves_while_presenting(
    media_site: Site,
    browser: Browser,
) -> None:
    owner, link = await _join_as_owner(browser, media_site, "Review")
    gina = await _join_as_guest(browser, link, "Gina")
    hugo = await browser.page("hugo", viewport=(390, 844), mobile=True)
    await hugo.goto(link)
    await hugo.fill("#guest-name", "Hugo")
    await hugo.click("#join")
    await hugo.wait_for_selector("#meeting", timeout=15_000)
    await _assert_receiving(owner, "Gina")

    await gina.click("#toggle-share")
    await gina.wait_for_selector("#presenting-bar:not([hidden])")
    assert await gina.get_attribute("#toggle-share", "aria-pressed") == "true"
    await _assert_screen_shown(owner)
    await _assert_receiving(owner, "Gina")  # her camera goes on beside her screen
    await _assert_screen_shown(hugo)
    await owner.wait_for_selector("#participants li:has-text('Gina') .present-icon")
    await browser.shot(owner, "owner-sees-gina-presenting")
    await browser.shot(hugo, "phone-sees-gina-presenting")
    await browser.shot(gina, "gina-presenting")

    await gina.click("#stop-share")
    await owner.wait_for_selector(SCREEN_TILE, state="detached", timeout=10_000)
    await owner.wait_for_selector("#tiles.grid")
    await hugo.wait_for_selector(SCREEN_TILE, state="detached", timeout=10_000)
    assert await gina.locator("#presenting-bar").is_hidden()
    await _assert_receiving(owner, "Gina")
    await browser.shot(owner, "owner-after-gina-stopped")

    # she presents again (the same m-line, active again) and leaves while presenting: it ends for everyone
    await gina.click("#toggle-share")
    await _assert_screen_shown(owner)
    await gina.click("#leave")
    await gina.wait_for_selector("[data-page=left]")
    await owner.wait_for_selector(SCREEN_TILE, state="detached", timeout=10_000)
    await hugo.wait_for_selector(SCREEN_TILE, state="detached", timeout=10_000)
    await owner.wait_for_selector("#tiles.grid")
    await browser.shot(owner, "owner-after-gina-left")
