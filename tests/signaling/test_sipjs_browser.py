"""sip.js 0.21 in headless Chromium against the stack: REGISTER over the WebSocket with digest, INVITE
`meeting-guest` with a real browser offer (fake devices), answered by aiortc so the media really connects,
an in-dialog MESSAGE from the server, then BYE from the browser."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from signaling.call import IncomingCall
from signaling.dialog import Dialog
from signaling.stack import SipStack, StackConfig
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM

from .conftest import FAST
from .support import Accounts, Meeting, Recorder

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not HAVE_CHROMIUM, reason=f"no chromium at {CHROMIUM}"),
]

SIPJS = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "sip.js" / "lib"

PAGE = """<!doctype html>
<html><body><audio id="remote" autoplay></audio><script type="module">
import { UserAgent, Registerer, RegistererState, Inviter, SessionState } from "/sipjs/index.js";
const log = (s) => { window.steps.push(s); };
window.steps = [];
window.messages = [];
const wsUrl = `ws://${location.host}/api/asterisk/ws`;
const ua = new UserAgent({
  uri: UserAgent.makeURI("sip:guest@meetings.test"),
  transportOptions: { server: wsUrl },
  authorizationUsername: "guest",
  authorizationPassword: "guest-pw",
  logLevel: "warn",
  sessionDescriptionHandlerFactoryOptions: {
    peerConnectionConfiguration: { iceServers: [] },
    iceGatheringTimeout: 500,
  },
});
try {
  await ua.start();
  log("connected");
  const registerer = new Registerer(ua);
  const registered = new Promise((resolve, reject) => {
    registerer.stateChange.addListener((s) => { if (s === RegistererState.Registered) resolve(); });
    setTimeout(() => reject(new Error("register timeout")), 5000);
  });
  await registerer.register();
  await registered;
  log("registered");
  const inviter = new Inviter(ua, UserAgent.makeURI("sip:meeting-guest@meetings.test"), {
    sessionDescriptionHandlerOptions: { constraints: { audio: true, video: true } },
  });
  inviter.delegate = { onMessage(message) { window.messages.push(message.request.body); message.accept(); } };
  const established = new Promise((resolve, reject) => {
    inviter.stateChange.addListener((s) => {
      if (s === SessionState.Established) resolve();
      if (s === SessionState.Terminated) reject(new Error("terminated before established"));
    });
  });
  await inviter.invite();
  await established;
  log("established");
  const pc = inviter.sessionDescriptionHandler.peerConnection;
  for (let i = 0; i < 100 && pc.connectionState !== "connected"; i++) await new Promise(r => setTimeout(r, 100));
  log("pc:" + pc.connectionState);
  for (let i = 0; i < 50 && window.messages.length === 0; i++) await new Promise(r => setTimeout(r, 100));
  await inviter.bye();
  log("bye");
  await registerer.unregister();
  log("done");
} catch (e) {
  log("error:" + e);
}
</script></body></html>
"""


class BrowserAnswerer:
    """Answers with aiortc so that Chrome's ICE and DTLS really complete."""

    def __init__(self) -> None:
        self.pcs: list[object] = []
        self.handler = Recorder()
        self.confirmed_dialog: Dialog | None = None
        self.calls: list[IncomingCall] = []

    async def on_invite(self, call: IncomingCall) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        self.calls.append(call)
        if call.extension != "meeting-guest":
            call.reject(403, "guest accounts may only dial meeting-guest")
            return
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=call.offer.decode(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        call.answer(pc.localDescription.sdp.encode(), self.handler)

    def on_cancel(self, call: IncomingCall) -> None:
        pass


@pytest.fixture
async def browser_server() -> AsyncIterator[tuple[str, SipStack, BrowserAnswerer, Accounts]]:
    accounts = Accounts()
    accounts.add("guest", "guest-pw", Meeting("m-1", "t", "*41000001"))
    answerer = BrowserAnswerer()
    stack = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts, answerer)
    app = web.Application()
    app.router.add_get("/api/asterisk/ws", stack.websocket.handle)

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_static("/sipjs/", SIPJS)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/", stack, answerer, accounts
    await stack.close()
    for pc in answerer.pcs:
        await pc.close()  # type: ignore[attr-defined]
    await runner.cleanup()


@pytest.mark.skipif(not SIPJS.exists(), reason="web/node_modules/sip.js missing (make web-deps)")
async def test_sipjs_register_invite_message_bye(
    browser_server: tuple[str, SipStack, BrowserAnswerer, Accounts],
) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError
    from playwright.async_api import async_playwright

    url, stack, answerer, _ = browser_server
    registered_seen: list[int] = []

    async def watch_registrar() -> None:
        while True:
            registered_seen.append(len(stack.registrar.lookup("guest")))
            await asyncio.sleep(0.05)

    async def send_message_after_ack() -> None:
        await answerer.handler.confirmed.wait()
        dialog = answerer.calls[0].dialog
        response = await dialog.message(b'{"type": "ConfbridgeWelcome", "channels": []}')
        assert response.status == 200

    console: list[str] = []
    watcher = asyncio.create_task(watch_registrar())
    messenger = asyncio.create_task(send_message_after_ack())
    async with async_playwright() as p:
        # Playwright gives the browser a fresh temporary profile (--user-data-dir) itself
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: console.append(m.text))
            for attempt in range(3):
                # a network namespace made by a test beside this one makes Chromium abort its loads
                # (ERR_NETWORK_CHANGED): the page's module may never run; load it again then
                await page.goto(url)
                with contextlib.suppress(PlaywrightTimeoutError):
                    await page.wait_for_function("window.steps !== undefined", timeout=15_000)
                    break
                console.append(f"the page's script did not start (attempt {attempt + 1})")
            try:  # 60 s: every step is quick, but a loaded machine (CI once went past 30 s) starts Chromium slowly
                await page.wait_for_function(
                    "window.steps && window.steps.some(s => s === 'done' || s.startsWith('error'))", timeout=60_000
                )
            except PlaywrightTimeoutError:
                steps = await page.evaluate("window.steps")
                raise AssertionError(f"sip.js stopped after {steps}: {console[-20:]}") from None
            steps = await page.evaluate("window.steps")
            messages = await page.evaluate("window.messages")
        finally:
            await browser.close()
    watcher.cancel()
    assert steps == ["connected", "registered", "established", "pc:connected", "bye", "done"], (steps, console[-20:])
    await asyncio.wait_for(messenger, 5)
    assert messages == ['{"type": "ConfbridgeWelcome", "channels": []}']
    assert max(registered_seen) == 1  # a binding existed while the page was registered
    assert stack.registrar.lookup("guest") == []  # unregistered (and the connection is gone)
    call = answerer.calls[0]
    assert call.account.username == "guest" and b"m=audio" in call.offer and b"m=video" in call.offer
    assert answerer.handler.events[0] == "confirmed"
    await asyncio.wait_for(answerer.handler.terminated.wait(), 3)
    assert answerer.handler.reason == "remote-bye"
    pc = answerer.pcs[0]
    assert pc.connectionState in ("connected", "closed")  # type: ignore[attr-defined]
