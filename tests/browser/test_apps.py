"""The two web apps in a real chromium, for everything that needs no media from the server: signing in, the
meetings list, guest links, the lobby, the error pages, and the meeting stage drawn from room messages."""

from __future__ import annotations

import re
import uuid
from typing import Any

from gateway.calld.conferences import Participant
from tests.browser.conftest import Browser, Site, sign_in
from tests.conftest import Api

MEETINGS = "/api/confd/1.1/users/me/meetings"


async def _owner(api: Api, name: str = "alice") -> tuple[dict[str, Any], str]:
    return await api.create_user(name, "alice-password")


async def test_sign_in_create_copy_link_and_delete(site: Site, browser: Browser) -> None:
    await _owner(site.api)
    page = await browser.page("owner")
    await page.goto(site.url + "/")
    await page.wait_for_selector("#signin")
    await browser.shot(page, "sign-in")

    await page.fill("#username", "alice")
    await page.fill("#password", "wrong")
    await page.click("#signin")
    await page.wait_for_selector("#signin-error:not([hidden])")
    assert "Wrong username or password" in await page.inner_text("#signin-error")

    await page.fill("#password", "alice-password")
    await page.click("#signin")
    await page.wait_for_selector("#create-form")
    assert await page.inner_text("#who") == "Alice"
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('meetings.session')).token")
    assert token
    await page.wait_for_selector("#meetings .empty")
    await browser.shot(page, "no-meetings")

    await page.fill("#meeting-name", "Weekly sync")
    await page.click("#create")
    item = page.locator("#meetings .meeting-item", has_text="Weekly sync")
    await item.wait_for()
    await page.fill("#meeting-name", "Board review")
    await page.check("#meeting-persistent")
    await page.check("#meeting-lobby")
    await page.click("#create")
    kept = page.locator("#meetings .meeting-item", has_text="Board review")
    await kept.wait_for()
    await browser.shot(page, "two-meetings")

    meetings = (await site.api.call("GET", MEETINGS, token))["items"]
    by_name = {m["name"]: m for m in meetings}
    assert by_name["Board review"]["persistent"] and by_name["Board review"]["require_authorization"]
    assert not by_name["Weekly sync"]["persistent"]
    # Name, creation time, and time left before expiry (48 h by default) or none for a kept meeting.
    text = await item.inner_text()
    assert "Created" in text, text
    assert "Expires in 48 h" in text or "Expires in 47 h 59 min" in text, text
    assert "Never expires" in await kept.inner_text()
    assert "Lobby" in await kept.inner_text()

    # Copy the guest link: the link leads to this server's guest app, with everything after "#".
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    await item.locator("[data-action=copy]").click()
    await page.wait_for_selector("#toast:not([hidden])")
    copied = await page.evaluate("navigator.clipboard.readText()")
    weekly = by_name["Weekly sync"]
    assert copied == await item.get_attribute("data-guest-link")
    assert copied.startswith(f"{site.url}/guests/#meeting={weekly['uuid']}&server=")
    assert "?" not in copied.split("#")[0]

    # A reload keeps the session (sessionStorage).
    await page.reload()
    await page.wait_for_selector("#meetings .meeting-item")

    # Delete, with a confirmation.
    await item.locator("[data-action=delete]").click()
    await page.wait_for_selector("#confirm-delete")
    await browser.shot(page, "confirm-delete")
    await page.click("#confirm-delete-button")
    await item.wait_for(state="detached")
    await site.api.call("GET", f"{MEETINGS}/{weekly['uuid']}", token, expect=404)

    # Sign out revokes the token.
    await page.click("#signout")
    await page.wait_for_selector("#signin")
    await site.api.call("GET", "/api/confd/1.1/users/me", token, expect=401)


async def test_guest_link_shows_meeting_name_and_preview(site: Site, browser: Browser) -> None:
    _, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Design review")
    owner = await browser.page("owner")
    await sign_in(owner, site, "alice", "alice-password")
    link = await owner.locator(f"[data-meeting='{meeting['uuid']}']").get_attribute("data-guest-link")

    guest = await browser.page("guest")
    await guest.goto(link)
    await guest.wait_for_selector("#prejoin-title")
    assert await guest.inner_text("#prejoin-title") == "Design review"
    assert await guest.title() == "Design review · Join"
    # The fake camera plays in the preview, and the devices are listed by name.
    await guest.wait_for_function("document.querySelector('.preview video').videoWidth > 0")
    assert await guest.locator("#video-device option").count() >= 1
    assert await guest.locator("#audio-device option").count() >= 1
    await browser.shot(guest, "guest-prejoin")

    # The name is required.
    await guest.click("#join")
    await guest.wait_for_selector(".alert.error:not([hidden])")
    assert "enter your name" in (await guest.inner_text(".alert.error")).lower()

    phone = await browser.page("phone", viewport=(390, 844), mobile=True)
    await phone.goto(site.guest_link(meeting["uuid"], name="Pat"))
    await phone.wait_for_selector("#prejoin-title")
    assert await phone.input_value("#guest-name") == "Pat"
    await phone.wait_for_function("document.querySelector('.preview video').videoWidth > 0")
    await browser.shot(phone, "guest-prejoin-phone")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone: {width}px"


async def test_lobby_owner_accepts_one_guest_and_rejects_another(site: Site, browser: Browser) -> None:
    _, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Interviews", require_authorization=True)
    assert meeting["guest_sip_authorization"] is None
    owner = await browser.page("owner")
    await sign_in(owner, site, "alice", "alice-password")
    lobby = owner.locator(f"[data-lobby='{meeting['uuid']}']")
    await lobby.wait_for()

    gina = await browser.page("gina")
    if not site.has_sip_websocket:
        # Until call control lands, the SIP WebSocket answers 404 and the guest is told the server cannot be reached.
        browser.expect_console(r"/api/asterisk/ws' failed|sip\.Transport")
    sip_sockets: list[str] = []
    gina.on("websocket", lambda socket: sip_sockets.append(socket.url))
    await gina.goto(site.guest_link(meeting["uuid"]))
    await gina.wait_for_selector("#prejoin-title")
    assert await gina.inner_text("#join") == "Ask to join"
    await gina.fill("#guest-name", "Gina")
    await gina.click("#join")
    await gina.wait_for_selector("[data-page=lobby]")
    await browser.shot(gina, "guest-waits-in-lobby")

    # The owner's list shows her at once (events WebSocket), and lets her in.
    waiting = lobby.locator("[data-guest='Gina']")
    await waiting.wait_for(timeout=5000)
    await browser.shot(owner, "owner-sees-lobby")
    await waiting.locator("[data-action=accept]").click()
    await waiting.wait_for(state="detached")

    # Gina leaves the lobby and calls with the meeting's guest credentials (SIP over WebSocket).
    await gina.wait_for_selector("[data-page=lobby]", state="detached", timeout=5000)
    await gina.wait_for_selector("#meeting" if site.has_sip_websocket else "[data-page=unreachable]", timeout=10_000)
    assert any(url.endswith("/api/asterisk/ws") for url in sip_sockets), sip_sockets
    await browser.shot(gina, "guest-after-accept")

    rex = await browser.page("rex")
    await rex.goto(site.guest_link(meeting["uuid"]))
    await rex.fill("#guest-name", "Rex")
    await rex.click("#join")
    await rex.wait_for_selector("[data-page=lobby]")
    turned_away = lobby.locator("[data-guest='Rex']")
    await turned_away.wait_for(timeout=5000)
    await turned_away.locator("[data-action=reject]").click()
    await rex.wait_for_selector("[data-page=rejected]", timeout=5000)
    assert "declined" in await rex.inner_text("[data-page=rejected]")
    await browser.shot(rex, "guest-rejected")

    authorizations = (await site.api.call("GET", f"{MEETINGS}/{meeting['uuid']}/authorizations", token))["items"]
    assert sorted((a["guest_name"], a["status"]) for a in authorizations) == [
        ("Gina", "accepted"),
        ("Rex", "rejected"),
    ]


async def test_error_pages_unknown_meeting_bad_link_no_camera(site: Site, browser: Browser) -> None:
    page = await browser.page("guest")
    await page.goto(site.guest_link(str(uuid.uuid4())))
    await page.wait_for_selector("[data-page=not-found]")
    assert "does not exist" in await page.inner_text("h1")
    await browser.shot(page, "unknown-meeting")

    await page.goto(f"{site.url}/guests/#server={site.url}")
    await page.wait_for_selector("[data-page=bad-link]")
    await browser.shot(page, "incomplete-link")

    # A meeting deleted while the link circulates: the same clear page.
    _, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Gone soon")
    await site.api.call("DELETE", f"{MEETINGS}/{meeting['uuid']}", token, expect=204)
    await page.goto(site.guest_link(meeting["uuid"]))
    await page.wait_for_selector("[data-page=not-found]")

    # The camera and microphone refused: joining is still open, listen-only, and the page says so plainly.
    live = await site.api.create_meeting(token, name="Stand-up")
    blocked = await browser.page("blocked")
    await blocked.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));"
    )
    await blocked.goto(site.guest_link(live["uuid"]))
    await blocked.wait_for_selector("#media-note:not([hidden])")
    note = await blocked.inner_text("#media-note")
    assert "microphone is blocked" in note and "camera is blocked" in note and "listen-only" in note, note
    assert await blocked.locator("#join").is_enabled()
    assert await blocked.locator("#prejoin-mic").is_disabled()
    assert await blocked.locator("#prejoin-cam").is_disabled()
    await browser.shot(blocked, "camera-and-microphone-blocked")

    # The server unreachable (the API does not answer): a retry, not a stack trace.
    down = await browser.page("down")
    browser.expect_console(r"net::ERR_FAILED")
    api_calls = re.compile(r"^http://[^/]+/api/")
    await down.route(api_calls, lambda route: route.abort())
    await down.goto(site.guest_link(live["uuid"]))
    await down.wait_for_selector("[data-page=unreachable]")
    await browser.shot(down, "server-unreachable")
    await down.unroute(api_calls)
    await down.click("#retry")
    await down.wait_for_selector("#prejoin-title")


async def test_full_room_is_told_before_joining(site: Site, browser: Browser) -> None:
    owner, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Packed room")
    await site.api.call(
        "PUT",
        "/api/confd/1.1/asterisk/confbridge/wazo_default_bridge",
        site.api.admin_token,
        {"options": {"video_mode": "sfu", "max_members": "1"}},
        expect=204,
    )
    page = await browser.page("guest")
    await page.goto(site.guest_link(meeting["uuid"]))
    await page.wait_for_selector("#prejoin-title")

    # Someone takes the only seat while the guest gets ready: the guest is told at Join.
    seat = Participant(
        id="seat-1",
        meeting_uuid=uuid.UUID(meeting["uuid"]),
        tenant_uuid=uuid.UUID(meeting["tenant_uuid"]),
        caller_id_name="Alice",
        caller_id_number="1001",
        call_id="call-1",
        user_uuid=uuid.UUID(owner["uuid"]),
        hangup=_no_hangup,
    )
    site.api.services.conferences.add(seat, (uuid.UUID(owner["uuid"]),))
    await page.fill("#guest-name", "Late Larry")
    await page.click("#join")
    await page.wait_for_selector("[data-page=full]")
    await browser.shot(page, "full-at-join")

    # And on opening the link.
    other = await browser.page("other")
    await other.goto(site.guest_link(meeting["uuid"]))
    await other.wait_for_selector("[data-page=full]")
    assert "full" in await other.inner_text("h1")
    await browser.shot(other, "full-on-open")

    site.api.services.conferences.remove(seat)
    await other.click("#retry")
    await other.wait_for_selector("#prejoin-title")


async def _no_hangup(_reason: str) -> None:
    return None


# The meeting stage, drawn from room messages and local video tracks standing in for the server's slots: the
# tiles, the names from video_slots, the talking indicator, the participant list, the toggles and the end pages.
STAGE_SCRIPT = """
async ({ endReason }) => {
  const { MeetingCall } = await import('/shared/call.js');
  const { renderMeeting } = await import('/shared/meeting-view.js');
  const { endedPage } = await import('/shared/pages.js');
  const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const call = new MeetingCall({ api: null, config: {}, username: 'x', password: 'x', target: 'x',
                                 displayName: 'Gina', localStream: local });
  call.callId = 'my-call-id';
  const colours = ['#d9485f', '#2f9e44', '#1c7ed6'];
  const slotStream = (i) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const ctx = canvas.getContext('2d');
    setInterval(() => {
      ctx.fillStyle = colours[i]; ctx.fillRect(0, 0, 320, 240);
      ctx.fillStyle = '#fff'; ctx.font = '40px sans-serif'; ctx.fillText('slot ' + i, 90, 130);
    }, 50);
    return canvas.captureStream(15);
  };
  for (const [i, mid] of ['2', '3', '4'].entries()) {
    const stream = slotStream(i);
    call.slots.set(mid, { mid, track: stream.getVideoTracks()[0], stream, channelId: null });
  }
  const channel = (id, name, callId, talking = 'off') => ({ id, caller: { name, number: '' },
      talking_status: talking, channelvars: { WAZO_SIP_CALL_ID: callId } });
  const root = document.getElementById('app');
  const view = renderMeeting(root, { call, title: 'Weekly sync', myName: 'Gina', micOn: true, camOn: true,
                                     onLeave: () => call.leave() });
  call.applyRoomEvent({ type: 'ConfbridgeWelcome', channels: [
      channel('c1', 'Alice Owner', 'a-call'), channel('c2', 'Bob', 'b-call'), channel('c3', 'Carol', 'c-call'),
      channel('me', 'Gina', 'my-call-id')],
    video_slots: { '2': 'c1', '3': 'c2', '4': null } });
  window.__stage = { call, view, endReason, endedPage };
  return true;
}
"""


async def _assert_tiles_fit(page: Any) -> None:
    """Every tile is 4:3 (nothing cropped into tall tiles), inside the stage, and none covers another."""
    boxes = await page.evaluate(
        "[...document.querySelectorAll('#tiles > .tile')].map(t => { const r = t.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; })"
    )
    stage = await page.evaluate("(() => { const r = document.getElementById('stage').getBoundingClientRect();"
                                " return [r.left, r.top, r.right, r.bottom]; })()")  # fmt: skip
    for left, top, right, bottom in boxes:
        assert abs((right - left) / (bottom - top) - 4 / 3) < 0.02, (left, top, right, bottom)
        assert left >= stage[0] - 1 and top >= stage[1] - 1 and right <= stage[2] + 1 and bottom <= stage[3] + 1
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1
            assert not overlap, (a, b)


async def test_meeting_stage_from_room_messages(site: Site, browser: Browser) -> None:
    _, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Weekly sync")
    page = await browser.page("guest")
    await page.goto(site.guest_link(meeting["uuid"]))
    await page.wait_for_selector("#prejoin-title")
    assert await page.evaluate(STAGE_SCRIPT, {"endReason": "deleted"})

    # Everyone has a tile: those the slots show with their video, Carol (no slot) with her initials, and mine.
    tiles = page.locator("#tiles .tile")
    await page.wait_for_function("document.querySelectorAll('#tiles .tile').length === 4")
    names = [await tiles.nth(i).get_attribute("data-participant") for i in range(4)]
    assert names == ["Alice Owner", "Bob", "Carol", "Gina"]
    await page.wait_for_function(
        "['Alice Owner', 'Bob'].every(n => document.querySelector(`.tile[data-participant='${n}']`)"
        ".classList.contains('has-video'))"
    )
    assert await page.inner_text(".tile[data-participant='Carol'] .avatar") == "C"
    assert await page.locator(".tile[data-participant='Carol'][data-mid]").count() == 0
    await _assert_tiles_fit(page)
    people = await page.inner_text("#participants")
    for name in ("Alice Owner", "Bob", "Carol", "Gina"):
        assert name in people
    assert "(you)" in people

    # Talking: the tile and the list light up; a slot handed to someone else is renamed. The tiles stay where they
    # are (a <video> taken out of the page pauses): a talking change moves nothing.
    await page.evaluate(
        "window.__moved = 0; new MutationObserver((records) => { window.__moved += records.length; })"
        ".observe(document.getElementById('tiles'), {childList: true})"
    )
    await page.evaluate(
        "__stage.call.applyRoomEvent({type: 'ConfbridgeTalking', channels: [{id: 'c2', talking_status: 'on'}]})"
    )
    await page.wait_for_selector("#tiles .tile.talking[data-participant='Bob']")
    assert await page.evaluate("window.__moved") == 0
    assert await page.locator("#participants li.talking").count() == 1
    await browser.shot(page, "stage-desktop")

    await page.evaluate(
        "__stage.call.applyRoomEvent({type: 'ConfbridgeLeave', channels: [{id: 'c1'}],"
        " video_slots: {'2': 'c3', '3': 'c2', '4': null}})"
    )
    await page.wait_for_selector("#tiles .tile[data-participant='Carol']")
    assert "Alice Owner" not in await page.inner_text("#participants")

    # A slot the server paused for want of bandwidth: an overlay on that tile, not a frozen picture; gone on resume.
    await page.evaluate(
        "__stage.call.applyRoomEvent({type: 'ConfbridgeVideoSlots', video_slots: {'2': 'c3', '3': 'c2', '4': null},"
        " video_slots_paused: ['3']})"
    )
    await page.wait_for_selector(".tile.paused[data-participant='Bob'] .paused-note:not([hidden])")
    assert await page.inner_text(".tile[data-participant='Bob'] .paused-note") == "Paused — weak connection"
    assert (
        await page.evaluate(
            "getComputedStyle(document.querySelector(\".tile[data-participant='Bob'] video\")).visibility"
        )
        == "hidden"
    )
    assert await page.locator(".tile.paused").count() == 1
    await browser.shot(page, "stage-paused")
    await page.evaluate(
        "__stage.call.applyRoomEvent({type: 'ConfbridgeVideoSlots', video_slots: {'2': 'c3', '3': 'c2', '4': null},"
        " video_slots_paused: []})"
    )
    await page.wait_for_selector(".tile[data-participant='Bob']:not(.paused) .paused-note[hidden]", state="attached")

    # Mute and camera toggles act on the tracks sent.
    await page.click("#toggle-mic")
    assert await page.evaluate("__stage.call.localStream.getAudioTracks().every(t => !t.enabled)")
    assert await page.get_attribute("#toggle-mic", "aria-pressed") == "true"
    await page.click("#toggle-cam")
    assert await page.evaluate("__stage.call.localStream.getVideoTracks().every(t => !t.enabled)")
    await page.wait_for_selector("#self-view .cam-off:not([hidden])")
    await browser.shot(page, "stage-muted")

    # The speaker view: Bob (talking) large, the others in a strip; pinning Carol makes hers the large tile and asks
    # the server for her video.
    await page.click("#toggle-layout")
    await page.wait_for_selector("#tiles.speaker .tile.main[data-participant='Bob']")
    assert await page.locator("#strip .tile").count() == 2  # Carol and me (Alice has left)
    await browser.shot(page, "stage-speaker")
    await page.hover(".tile[data-participant='Carol']")
    await page.click(".tile[data-participant='Carol'] .pin")
    await page.wait_for_selector("#tiles.speaker .tile.main.pinned[data-participant='Carol']")
    assert await page.evaluate("__stage.call.pinned") == "c3"
    await page.click("#toggle-layout")
    await page.wait_for_selector("#tiles.grid")

    # A crowd on a phone: as many tiles as fit, the rest behind "+N", mine always there.
    await page.evaluate(
        "__stage.call.applyRoomEvent({type: 'ConfbridgeJoin', channels: Array.from({length: 12}, (_, i) =>"
        " ({id: 'x' + i, caller: {name: 'Guest ' + (i + 10), number: ''}, talking_status: 'off',"
        " channelvars: {WAZO_SIP_CALL_ID: 'x' + i}}))})"
    )
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_selector("#overflow")
    shown = await page.locator("#tiles > .tile:not(.overflow)").count()
    hidden = int((await page.inner_text("#overflow")).lstrip("+"))
    assert shown + hidden == 15  # Bob, Carol, the 12 guests and me, each once
    assert await page.locator("#tiles .tile.self").count() == 1
    await _assert_tiles_fit(page)
    await browser.shot(page, "stage-phone")
    await page.click("#toggle-people")
    await browser.shot(page, "stage-phone-people")

    await page.evaluate(
        "(() => { __stage.view.destroy(); __stage.endedPage(document.getElementById('app'), "
        "{reason: 'deleted', text: 'meeting deleted', meetingName: 'Weekly sync'}); })()"
    )
    await page.wait_for_selector("[data-page=ended]")
    assert "The meeting has ended" in await page.inner_text("h1")
    await browser.shot(page, "ended-phone")
    await page.evaluate(
        "__stage.endedPage(document.getElementById('app'),"
        " {reason: 'kicked', text: 'kicked', meetingName: 'Weekly sync'})"
    )
    await page.wait_for_selector("[data-page=removed]")
    assert "You were removed" in await page.inner_text("h1")


async def test_live_view_for_operators(site: Site, browser: Browser) -> None:
    import aiohttp

    from tests.conftest import ADMIN_PASSWORD
    from tests.e2e.conftest import Room, guest_credentials

    page = await browser.page("operator")
    await sign_in(page, site, "admin", ADMIN_PASSWORD)
    await page.click("#live-link")
    await page.wait_for_selector("#live-charts")
    assert await page.locator("#live-charts .chart svg polyline").count() == 4
    await page.wait_for_selector("#live-no-rooms")

    _, token = await _owner(site.api)
    meeting = await site.api.create_meeting(token, name="Watched")
    async with aiohttp.ClientSession() as session:
        room = Room(site.api, session)
        members = [await room.member(guest_credentials(meeting), 440.0, colour) for colour in ("red", "green")]
        try:
            for member in members:
                await member.join("meeting-guest")
            rows = page.locator(f"[data-meeting='{meeting['uuid']}'] tbody tr")
            await rows.nth(1).wait_for(timeout=12_000)  # the next poll (every 5 s)
            assert "webrtc" in await rows.nth(0).inner_text()
            assert "Watched" in await page.inner_text(f"[data-meeting='{meeting['uuid']}'] h2")
            # each one's call quality: the round trip measured, no loss, both sending and receiving audio and video
            measured = re.compile(r"^\d+\.\d ms$")
            for index in range(2):
                row = rows.nth(index)
                rtt = row.locator("[data-quality=rtt]")
                for _ in range(40):  # figures come with the room's samples and his receiver reports: a few polls
                    text = await rtt.inner_text()
                    receives = await row.locator("[data-quality=receives]").inner_text()
                    if measured.match(text) and "160x120" in receives:
                        break
                    await page.wait_for_timeout(500)
                assert measured.match(text), text
                assert await row.locator("[data-quality=loss]").inner_text() == "in 0.0 % · out 0.0 %"
                sends = await row.locator("[data-quality=sends]").inner_text()
                audio, video = re.match(r"^(\d+) / (\d+) kbit/s", sends).groups()  # type: ignore[union-attr]
                assert int(audio) > 0 and int(video) > 0 and "160x120" in sends, sends
                assert "160x120" in receives, receives
            await browser.shot(page, "live-view")
        finally:
            for member in members:
                await member.close()

    # a user who is not an administrator has no link, and the page says why if he goes there anyway
    user = await browser.page("user")
    await sign_in(user, site, "alice", "alice-password")
    assert await user.locator("#live-link").count() == 0
    await user.goto(site.url + "/#/live")
    await user.wait_for_selector("#live-error")
