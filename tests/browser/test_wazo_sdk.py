"""Wazo's JavaScript SDK, unchanged (@wazo/sdk from npm, bundled at set-up by `make web-deps`), runs its guest
meeting flow against the server from a page on another origin, as an app built on it does:
``Wazo.Auth.setHost``, ``confd.guestGetMeeting``, ``calld.guestGetMeetingStatus``, ``Wazo.Phone.connectWithCredentials``
and ``Wazo.SipRoom.connect({extension: 'meeting-guest'})``.

The SDK always speaks HTTPS and WSS to the one host:port it is given, so the server here serves TLS with a
self-signed certificate (the pages' browser contexts accept it). Two guests join; each hears the other and decodes
the other's video, and the SDK puts that video on the right participant: the stream it gives the remote participant
(matched by the ``a=label`` of its m-line, our participant id as the room messages' channel id) is the one whose
slot the server fills with that participant's camera.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import CALL_CONTROL
from gateway.config import Settings
from gateway.tls import server_context
from tests.browser.conftest import Browser, Site
from tests.browser.other_origin import WAZO_SDK_BUNDLE, other_origin
from tests.certificates import certificate_in
from tests.conftest import Api, start_api

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = """<!doctype html><html><body><script type="module">
import Wazo from "/wazo-sdk.js";
const p = new URLSearchParams(location.hash.slice(1));
const server = p.get("server"), uuid = p.get("meeting"), name = p.get("name");
window.__log = (line) => (window.__lines = window.__lines || []).push(line);
try {
  Wazo.Auth.setHost(server);
  const meeting = await Wazo.getApiClient().confd.guestGetMeeting(uuid);
  const status = await Wazo.getApiClient().calld.guestGetMeetingStatus(uuid);
  if (status.full) throw new Error("the meeting is full");
  const [username, secret] = atob(meeting.guestSipAuthorization).split(":");
  Wazo.Phone.connectWithCredentials(server, { username, secret }, name, { media: { audio: true, video: true } });
  const room = await Wazo.SipRoom.connect({ extension: "meeting-guest", constraints: { audio: true, video: true } });
  room.on(room.ON_JOINED, () => { window.__joined = true; });
  room.on(room.CONFERENCE_USER_PARTICIPANT_JOINED, (participant) => {
    // what an app does with a participant's video: a <video> for it (the SDK may have given it one already)
    const show = (stream) => {
      const video = document.createElement("video");
      video.dataset.callId = participant.callId;
      video.muted = true;
      document.body.append(stream.attach(video));
    };
    participant.videoStreams.forEach(show);
    participant.on(participant.ON_STREAM_SUBSCRIBED, show);
  });
  window.__room = room;
} catch (error) {
  window.__error = String((error && error.stack) || error);
}
</script></body></html>"""

# The SDK's view of the room: each participant (call id, name, local or not) and, for its video streams, the mid
# of the transceiver receiving each stream's track; with the <video> the app made for it.
STATE_JS = """
() => {
  const room = window.__room;
  if (!room) return { error: window.__error || null };
  const phone = Wazo.Phone.phone;
  const pc = phone && phone.currentSipSession && phone.currentSipSession.sessionDescriptionHandler.peerConnection;
  const midOf = (track) => {
    const transceiver = pc && pc.getTransceivers().find((t) => t.receiver.track === track);
    return transceiver ? transceiver.mid : null;
  };
  return {
    joined: Boolean(window.__joined),
    local: room.localParticipant ? room.localParticipant.callId : null,
    participants: room.participants.map((participant) => ({
      callId: participant.callId,
      name: participant.name,
      local: participant === room.localParticipant,
      videoMids: participant.videoStreams.flatMap((stream) => stream.htmlStream.getVideoTracks().map(midOf)),
      videoWidth: Math.max(0, ...[...document.querySelectorAll("video")]
        .filter((video) => video.dataset.callId === participant.callId).map((video) => video.videoWidth)),
    })),
  };
}
"""

# Media the page receives: {video: {mid: framesDecoded}, audioSamples}
RECEIVED_JS = """
async () => {
  const pc = Wazo.Phone.phone.currentSipSession.sessionDescriptionHandler.peerConnection;
  const video = {};
  let audioSamples = 0;
  for (const transceiver of pc.getTransceivers()) {
    if (!transceiver.mid) continue;
    for (const report of (await transceiver.receiver.getStats()).values()) {
      if (report.type !== "inbound-rtp") continue;
      if (report.kind === "video") video[transceiver.mid] = report.framesDecoded || 0;
      else audioSamples += report.totalSamplesReceived || 0;
    }
  }
  return { video, audioSamples };
}
"""


@pytest.fixture
async def api(settings: Settings, aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Api]:
    """The server over TLS (HTTPS and WSS on its one port), as the SDK requires."""
    cert, key = certificate_in(tmp_path)
    yield await start_api(settings, aiohttp_client, server_context(str(cert), str(key)))


@pytest.fixture
def media_site(site: Site) -> Site:
    if not site.has_sip_websocket:
        pytest.skip("call control is not mounted yet: the server has no /api/asterisk/ws route (SIP over WebSocket)")
    if not WAZO_SDK_BUNDLE.exists():
        pytest.skip(f"no {WAZO_SDK_BUNDLE}: `make web-deps` bundles Wazo's SDK from npm")
    return site


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async with other_origin({"/": PAGE}) as url:
        yield url


async def state_of(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(STATE_JS)
    if state.get("error"):
        raise AssertionError(f"the SDK's guest flow failed: {state['error']}")
    return state


async def wait_for(page: Any, what: str, check: Any, seconds: float = 20) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for _ in range(int(seconds * 10)):
        state = await state_of(page)
        if state.get("participants") is not None and check(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the SDK's room: {state}")


#: @wazo/sdk 0.44.7 takes `getstats` from Wazo's fork on GitHub (wazo-platform/getStats#1.0.7), which npm cannot
#: fetch here: web/package.json overrides it with npm's getstats 1.2.0, whose stats loop calls the callback form of
#: RTCPeerConnection.getStats that Chrome no longer has. It throws once per call, in the SDK's stats logging only.
GETSTATS_LEGACY_CALL = r"Failed to execute 'getStats' on 'RTCPeerConnection': parameter 1 is not of type"


async def test_the_sdk_guest_flow_from_another_origin(media_site: Site, origin: str, browser: Browser) -> None:
    browser.expect_page_error(GETSTATS_LEGACY_CALL)
    _, token = await media_site.api.create_user("alice", "alice-password")
    meeting = await media_site.api.create_meeting(token, name="SDK")
    server = media_site.url.removeprefix("https://")
    pages = {}
    for name in ("Gina", "Hugo"):
        page = await browser.page(name, trust_any_tls=True)
        await page.goto(f"{origin}/#server={server}&meeting={meeting['uuid']}&name={name}")
        pages[name] = page
        await wait_for(page, f"{name} to join", lambda s: s["joined"] and s["local"])

    (room,) = media_site.api.client.app[CALL_CONTROL].media.sfu.rooms.values()
    ids = {str(p.info["name"]): p.id for p in room.participants.values()}
    assert sorted(ids) == ["Gina", "Hugo"]
    for name, other in (("Gina", "Hugo"), ("Hugo", "Gina")):
        await sees(browser, pages[name], room, ids, name, other)

    # media both ways: each decodes the other's video and hears the room, and keeps doing so
    before = {name: await page.evaluate(RECEIVED_JS) for name, page in pages.items()}
    await asyncio.sleep(1.5)
    for name, page in pages.items():
        after = await page.evaluate(RECEIVED_JS)
        (mid,) = next(p for p in (await state_of(page))["participants"] if not p["local"])["videoMids"]
        assert after["video"][mid] > before[name]["video"].get(mid, 0) > 0, (name, before[name], after)
        assert after["audioSamples"] > before[name]["audioSamples"] > 0, (name, before[name], after)

    # Hugo hangs up and Ivan comes: Gina's one slot now carries Ivan's camera, announced afresh for him, and her
    # SDK puts it on Ivan (not on Hugo, who has left)
    await pages["Hugo"].evaluate("() => window.__room.disconnect()")
    await wait_for(pages["Gina"], "Hugo to leave", lambda s: all(p["callId"] != ids["Hugo"] for p in s["participants"]))
    page = await browser.page("Ivan", trust_any_tls=True)
    await page.goto(f"{origin}/#server={server}&meeting={meeting['uuid']}&name=Ivan")
    pages["Ivan"] = page
    await wait_for(page, "Ivan to join", lambda s: s["joined"] and s["local"])
    ids = {str(p.info["name"]): p.id for p in room.participants.values()}
    await sees(browser, pages["Gina"], room, ids, "Gina", "Ivan")
    await sees(browser, pages["Ivan"], room, ids, "Ivan", "Gina")


async def sees(browser: Browser, page: Any, room: Any, ids: dict[str, str], name: str, other: str) -> None:
    """`name`'s SDK shows `other`'s video on `other`, and it is the slot the server fills with `other`'s camera."""

    def mapped(state: dict[str, Any]) -> bool:
        remote = [p for p in state["participants"] if p["callId"] == ids[other]]
        return len(remote) == 1 and bool(remote[0]["videoMids"]) and remote[0]["videoWidth"] > 0

    state = await wait_for(page, f"{name}'s SDK to show {other}'s video", mapped)
    # the SDK knows who is who: itself by its SIP call, the other by the room's channel id
    local = next(p for p in state["participants"] if p["local"])
    assert local["callId"] == ids[name] and local["name"] == name
    remote = next(p for p in state["participants"] if p["callId"] == ids[other])
    assert remote["name"] == other and not remote["local"]
    # the stream it gave the other is the slot the server fills with the other's camera
    participant = room.participants[ids[name]]
    shows = {slot.mid: slot.target.owner_id for slot in participant.slots if slot.target is not None}
    assert remote["videoMids"] == [mid for mid, owner in shows.items() if owner == ids[other]], (remote, shows)
    await browser.shot(page, f"{name.lower()}-sees-{other.lower()}")
