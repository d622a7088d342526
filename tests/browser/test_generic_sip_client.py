"""A generic SIP client (stock sip.js, none of our apps' code) in a meeting, from a page on another origin: it is
offered one video slot per other participant with a camera, up to last-N, added by re-INVITE as they arrive; never
a slot nothing will come on (a one-to-one call used to show three black streams).

Three guests join one after the other: Olga without a camera, then Gina and Hugo with one. Olga's slots go
0 -> 1 -> 2, Gina gets none while only Olga (no camera) is there and then one for Hugo, Hugo one for Gina. Each
slot's m-line carries ``a=label`` with the participant it shows (what Wazo's SDK reads), and frames come on it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import CALL_CONTROL
from tests.browser.conftest import Browser, Site
from tests.browser.other_origin import other_origin
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Stock sip.js: the UserAgent's default session description handler, nothing of web/shared.
PAGE = """<!doctype html><html><body><script type="module">
import { Inviter, Registerer, RegistererState, SessionState, UserAgent } from "/vendor/sip-bundle.js";
const p = new URLSearchParams(location.hash.slice(1));
const [username, password] = atob(p.get("auth")).split(":");
const ua = new UserAgent({
  uri: UserAgent.makeURI(`sip:${username}@${p.get("domain")}`),
  authorizationUsername: username, authorizationPassword: password, displayName: p.get("name"),
  transportOptions: { server: p.get("ws") }, logLevel: "error",
  sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] } },
});
await ua.start();
const registerer = new Registerer(ua);
const registered = new Promise((resolve) => registerer.stateChange.addListener(
  (state) => state === RegistererState.Registered && resolve()));
await registerer.register();
await registered;
const inviter = new Inviter(ua, UserAgent.makeURI(`sip:meeting-guest@${p.get("domain")}`), {
  sessionDescriptionHandlerOptions: { constraints: { audio: true, video: p.get("video") === "1" } },
});
window.__offers = []; // the server's re-INVITE offers as sent (the browser's remoteDescription drops a=label)
inviter.delegate = { onInvite: (request) => window.__offers.push(request.body) };
const established = new Promise((resolve) => inviter.stateChange.addListener(
  (state) => state === SessionState.Established && resolve()));
await inviter.invite();
await established;
window.__sip = { inviter };
</script></body></html>"""

# The server's video slots as this client sees them: {mid: label} of the m=video sections the server sends on
# (sendonly from its side, port not 0) in its latest offer; {} before any.
SLOTS_JS = """
() => {
  if (!window.__sip) return null;
  const offer = window.__offers[window.__offers.length - 1] || "";
  const slots = {};
  for (const section of offer.split(/\\r\\n(?=m=)/).slice(1)) {
    if (!/^m=video [1-9]/.test(section) || !/^a=sendonly/m.test(section)) continue;
    const mid = (/^a=mid:(\\S+)/m.exec(section) || [])[1];
    slots[mid] = (/^a=label:(\\S+)/m.exec(section) || [])[1] || null;
  }
  return slots;
}
"""

# {mid: framesDecoded} of the receiving video transceivers
FRAMES_JS = """
async () => {
  const pc = window.__sip.inviter.sessionDescriptionHandler.peerConnection;
  const out = {};
  for (const transceiver of pc.getTransceivers()) {
    if (!transceiver.mid || transceiver.receiver.track.kind !== 'video') continue;
    for (const report of (await transceiver.receiver.getStats()).values()) {
      if (report.type === 'inbound-rtp') out[transceiver.mid] = report.framesDecoded || 0;
    }
  }
  return out;
}
"""


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async with other_origin({"/": PAGE}) as url:
        yield url


class Guest:
    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.slots: dict[str, str | None] | None = None

    async def read_slots(self) -> dict[str, str | None] | None:
        self.slots = await self.page.evaluate(SLOTS_JS)
        return self.slots


async def join(browser: Browser, origin: str, site: Site, meeting: dict[str, Any], name: str, video: bool) -> Guest:
    config = await site.api.call("GET", "/api/meetings-web/config.json")
    ws = site.url.replace("http://", "ws://") + config["sip_websocket_path"]
    fragment = f"auth={meeting['guest_sip_authorization']}&domain={config['sip_domain']}&ws={ws}&name={name}"
    page = await browser.page(name)
    await page.goto(f"{origin}/#{fragment}&video={int(video)}")
    await page.wait_for_function("window.__sip !== undefined", timeout=15_000)
    return Guest(page, name)


async def slot_count_becomes(guest: Guest, count: int) -> None:
    for _ in range(150):
        slots = await guest.read_slots()
        if slots is not None and len(slots) == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{guest.name}'s slots: {guest.slots}, not {count}")


async def frames_come(guest: Guest, mids: list[str]) -> None:
    frames: dict[str, int] = {}
    for _ in range(100):
        frames = await guest.page.evaluate(FRAMES_JS)
        if all(frames.get(mid, 0) > 0 for mid in mids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{guest.name}: no frames on every slot of {mids}: {frames}")


async def test_a_generic_client_gets_a_slot_per_other_camera_as_they_arrive(
    media_site: Site, origin: str, browser: Browser
) -> None:
    _, token = await media_site.api.create_user("alice", "alice-password")
    created = await media_site.api.create_meeting(token, name="Generic")
    # what a generic app has: the guest link's meeting, read from the guest API (credentials base64 "user:pass")
    meeting = await media_site.api.call("GET", f"/api/confd/1.1/guests/me/meetings/{created['uuid']}")
    assert base64.b64decode(meeting["guest_sip_authorization"]).count(b":") == 1

    olga = await join(browser, origin, media_site, meeting, "Olga", video=False)
    await asyncio.sleep(1.0)  # time for a re-INVITE, were one (wrongly) sent
    assert await olga.read_slots() == {}, "alone, no slot"

    gina = await join(browser, origin, media_site, meeting, "Gina", video=True)
    await slot_count_becomes(olga, 1)
    await asyncio.sleep(1.0)
    assert await gina.read_slots() == {}, "the only other participant has no camera: no slot"

    hugo = await join(browser, origin, media_site, meeting, "Hugo", video=True)
    await slot_count_becomes(olga, 2)
    await slot_count_becomes(gina, 1)
    await slot_count_becomes(hugo, 1)

    # each slot is labelled with the participant whose video it carries, and that video comes on it
    (room,) = media_site.api.client.app[CALL_CONTROL].media.sfu.rooms.values()
    ids = {str(p.info["name"]): p.id for p in room.participants.values()}
    await asyncio.sleep(1.0)
    for guest, shown in ((olga, {"Gina", "Hugo"}), (gina, {"Hugo"}), (hugo, {"Gina"})):
        slots = await guest.read_slots()
        assert slots is not None, guest.name
        labels = sorted(str(label) for label in slots.values())
        assert labels == sorted(ids[name] for name in shown), (guest.name, slots)
        participant = room.participants[ids[guest.name]]
        targets = {slot.mid: slot.target.owner_id for slot in participant.slots if slot.target is not None}
        assert targets == slots, f"{guest.name}: the server shows {targets} in slots labelled {slots}"
        await frames_come(guest, list(slots))

    # Hugo leaves: nobody is offered more, the others' slots stay. Ivan's camera then takes the slot Hugo's had, and
    # that slot is announced afresh, labelled for Ivan (a new msid too: a new stream for the browser)
    await hugo.page.close()
    await until(lambda: ids["Hugo"] not in room.participants, 10, "Hugo to be gone")
    await asyncio.sleep(0.5)
    assert len(await olga.read_slots() or {}) == 2 and len(await gina.read_slots() or {}) == 1
    ivan = await join(browser, origin, media_site, meeting, "Ivan", video=True)
    ids = {str(p.info["name"]): p.id for p in room.participants.values()}
    for guest, shown in ((olga, {"Gina", "Ivan"}), (gina, {"Ivan"}), (ivan, {"Gina"})):
        for _ in range(100):
            slots = await guest.read_slots() or {}
            if sorted(str(label) for label in slots.values()) == sorted(ids[name] for name in shown):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{guest.name}'s slots are labelled {guest.slots}, not for {shown}")
        assert len(slots) == len(shown)
        await frames_come(guest, list(slots))
