"""The apps' SIP client (web/shared/call.js) and meeting stage against the project's SIP stack, with aiortc playing
call control the way the contract says it will: answer the INVITE, re-INVITE after the ACK adding sendonly video
m-lines (one per slot), send ConfbridgeWelcome with video_slots, and hang up with a Reason. A refusal with
"meeting is full" must be told as such. This pins the client side of the contract before the real call control
exists (the full story is in test_media_story.py)."""

from __future__ import annotations

import asyncio
import fractions
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import webapps
from signaling.call import IncomingCall
from signaling.dialog import BaseDialogHandler, Dialog
from signaling.stack import SipStack, StackConfig
from tests.browser.conftest import Browser
from tests.browser.media import lit_pixels, received, tile_mid
from tests.signaling.support import Accounts, Meeting

WEB = Path(__file__).resolve().parents[2] / "web"
DOMAIN = "meetings.test"

PAGE = """<!doctype html><html><head><link rel="stylesheet" href="/shared/styles.css">
<script type="importmap">{"imports": {"sip.js": "/vendor/sip-bundle.js"}}</script></head>
<body><div id="app" style="display:contents"></div><script type="module">
import { Api } from "/shared/api.js";
import { MeetingCall } from "/shared/call.js";
import { renderMeeting } from "/shared/meeting-view.js";
import { endedPage, showMessage } from "/shared/pages.js";
const root = document.getElementById("app");
const params = new URLSearchParams(location.hash.slice(1));
const config = { sipDomain: "meetings.test", sipWebsocketPath: "/api/asterisk/ws", iceServers: [] };
const localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
const call = new MeetingCall({ api: new Api(location.origin), config, username: "guest", password: "guest-pw",
                               target: params.get("target") || "meeting-guest", displayName: "Gina", localStream });
window.__meeting = { call };
try {
  await call.join();
  renderMeeting(root, { call, title: "Contract", myName: "Gina", onLeave: () => call.leave() });
  call.addEventListener("ended", (e) => endedPage(root, { ...e.detail, meetingName: "Contract" }));
} catch (error) {
  window.__joinError = { kind: error.kind, message: error.message };
  showMessage(root, { id: "join-" + error.kind, title: error.message });
}
</script></body></html>"""


def _colour_track(rgb: tuple[int, int, int]) -> Any:
    import numpy as np
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    class Colour(VideoStreamTrack):  # type: ignore[misc]
        async def recv(self) -> VideoFrame:
            pts, time_base = await self.next_timestamp()
            image = np.zeros((240, 320, 3), dtype=np.uint8)
            image[:, :] = rgb
            frame = VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
            return frame

    return Colour()


class Confirmed(BaseDialogHandler):
    def __init__(self) -> None:
        self.confirmed = asyncio.Event()

    def on_confirmed(self, dialog: Dialog) -> None:
        self.confirmed.set()


class FakeCallControl:
    def __init__(self) -> None:
        self.pcs: list[Any] = []
        self.calls: list[IncomingCall] = []
        self.handler = Confirmed()
        self.refuse_full = False

    async def on_invite(self, call: IncomingCall) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        self.calls.append(call)
        if self.refuse_full:
            call.reject(486, "meeting is full")
            return
        # No audio sent back: the re-offer's first m-line is then recvonly, which the stock sip.js handler would
        # apply to every m-line (making the slots inactive); the apps' handler answers each m-line on its own.
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=call.offer.decode(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        call.answer(pc.localDescription.sdp.encode(), self.handler)

    def on_cancel(self, call: IncomingCall) -> None:
        pass

    async def add_slots(self, colours: list[tuple[int, int, int]]) -> list[str]:
        """The re-INVITE after the ACK: one sendonly video m-line per slot. Returns their mids."""
        from aiortc import RTCSessionDescription

        await self.handler.confirmed.wait()
        pc = self.pcs[0]
        transceivers = [pc.addTransceiver(_colour_track(c), direction="sendonly") for c in colours]
        await pc.setLocalDescription(await pc.createOffer())
        # aiortc numbers the RTP header extensions afresh in its re-offer, and Chrome refuses an ID reassigned
        # ("RTP extension ID reassignment not supported"): real call control must keep the negotiated IDs. This
        # stand-in simply offers none.
        offer = "".join(line for line in pc.localDescription.sdp.splitlines(True) if not line.startswith("a=extmap"))
        answer = await self.calls[0].dialog.reinvite(offer.encode())
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
        return [str(t.mid) for t in transceivers]


@pytest.fixture
async def contract_server() -> AsyncIterator[tuple[str, FakeCallControl]]:
    accounts = Accounts()
    accounts.add("guest", "guest-pw", Meeting("m-1", "t", "*41000001"))
    control = FakeCallControl()
    stack = SipStack(StackConfig(domain=DOMAIN), accounts, control)
    app = web.Application()
    app.router.add_get("/api/asterisk/ws", stack.websocket.handle)

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_static("/shared/", WEB / "shared")
    webapps.add_sipjs_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/", control
    await stack.close()
    for pc in control.pcs:
        await pc.close()
    await runner.cleanup()


# sip.js un-REGISTERs when it stops, re-using the digest of its last challenge; the stack answers 403 rather than
# a new challenge (reported to the signaling side). Harmless: closing the WebSocket drops the binding anyway.
UNREGISTER_403 = r"Unregister rejected with status code 403"


async def test_slots_names_and_bye_reason(contract_server: tuple[str, FakeCallControl], browser: Browser) -> None:
    url, control = contract_server
    browser.expect_console(UNREGISTER_403)
    page = await browser.page("guest")
    await page.goto(url)
    await page.wait_for_selector("#meeting", timeout=15_000)
    call = control.calls[0]
    assert call.extension == "meeting-guest" and b"m=audio" in call.offer and b"m=video" in call.offer

    mids = await control.add_slots([(220, 60, 60), (40, 160, 80)])
    channel = {"caller": {"name": "", "number": ""}, "talking_status": "off", "channelvars": {}}
    welcome = {
        "type": "ConfbridgeWelcome",
        "channels": [
            {**channel, "id": "c-alice", "caller": {"name": "Alice", "number": "1001"}},
            {**channel, "id": "c-bob", "caller": {"name": "Bob", "number": "1002"}},
            {**channel, "id": "c-me", "caller": {"name": "Gina", "number": ""},
             "channelvars": {"WAZO_SIP_CALL_ID": call.call_id}},
        ],
        "video_slots": {mids[0]: "c-alice", mids[1]: "c-bob"},
    }  # fmt: skip
    response = await call.dialog.message(json.dumps(welcome).encode())
    assert response.status == 200

    # Both slots keep their own track and picture (the stock sip.js handler would stop the first one).
    for name in ("Alice", "Bob"):
        mid = await tile_mid(page, name)
        await page.wait_for_function(
            f"document.querySelector('.tile[data-mid=\"{mid}\"]').classList.contains('has-video')", timeout=10_000
        )
        assert await lit_pixels(page, mid) > 0.9
    before = await received(page)
    await asyncio.sleep(1)
    after = await received(page)
    for mid in mids:
        assert after["video"][mid]["framesDecoded"] > before["video"][mid]["framesDecoded"] > 0
    assert "(you)" in await page.inner_text("#participants")

    talking = {"type": "ConfbridgeTalking", "channels": [{**channel, "id": "c-bob", "talking_status": "on"}]}
    await call.dialog.message(json.dumps(talking).encode())
    await page.wait_for_selector("#tiles .tile.talking[data-participant='Bob']")
    await browser.shot(page, "two-slots-bob-talking")

    await call.dialog.request("BYE", headers=[("Reason", 'Q.850;cause=16;text="meeting deleted"')])
    await page.wait_for_selector("[data-page=ended]", timeout=2000)
    assert "The meeting has ended" in await page.inner_text("h1")
    await browser.shot(page, "ended-by-bye")


async def test_full_room_refusal(contract_server: tuple[str, FakeCallControl], browser: Browser) -> None:
    url, control = contract_server
    control.refuse_full = True
    browser.expect_console(UNREGISTER_403)
    page = await browser.page("guest")
    await page.goto(url)
    await page.wait_for_selector("[data-page=join-full]", timeout=15_000)
    assert await page.evaluate("window.__joinError.kind") == "full"


async def test_without_the_bundle_sip_js_comes_from_its_own_modules(
    contract_server: tuple[str, FakeCallControl], browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback: no bundle built, the same names from sip.js's ES modules, and the client works the same."""
    monkeypatch.setattr(webapps, "SIPJS_BUNDLE", webapps.SIPJS_BUNDLE.with_name("not-built.js"))
    url, control = contract_server
    control.refuse_full = True
    browser.expect_console(UNREGISTER_403)
    page = await browser.page("guest")
    modules: list[str] = []
    page.on("request", lambda request: modules.append(request.url) if "/vendor/sip.js/" in request.url else None)
    await page.goto(url)
    await page.wait_for_selector("[data-page=join-full]", timeout=15_000)
    assert await page.evaluate("window.__joinError.kind") == "full"
    assert len(modules) > 100  # sip.js's own modules, one request each
