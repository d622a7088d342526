"""The stack as the gateway uses it: dial plan answers, registrar, digest on the wire, and two real stacks
calling each other (the UAC API, in-dialog requests both ways)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from signaling.dialog import DialogState
from signaling.digest import DigestCredentials
from signaling.stack import CallFailed, SipStack, StackConfig

from .conftest import FAST, UdpPeer
from .raw import OFFER, authorization, request
from .support import CANNED_SDP, Accounts, DialPlan, Meeting, Recorder


@pytest.fixture
async def caller() -> AsyncIterator[SipStack]:
    """Another stack that places calls (as the gateway does towards Asterisk)."""
    s = SipStack(StackConfig(domain="caller.test", timers=FAST), Accounts())
    await s.start_udp("127.0.0.1", 0)
    yield s
    await s.close()


def target(stack: SipStack, exten: str, transport: str = "udp") -> str:
    if transport == "tcp":
        return f"sip:{exten}@127.0.0.1:{stack.tcp.port};transport=tcp"  # type: ignore[union-attr]
    return f"sip:{exten}@127.0.0.1:{stack.udp.port}"  # type: ignore[union-attr]


async def call_fails(caller: SipStack, uri: str, user: str, password: str, offer: bytes = OFFER) -> CallFailed:
    with pytest.raises(CallFailed) as e:
        await caller.invite(uri, offer, credentials=DigestCredentials(user, password))
    return e.value


# -- the dial plan's answers ------------------------------------------------------------------------------------
async def test_guest_may_only_dial_meeting_guest(stack: SipStack, caller: SipStack, meeting: Meeting) -> None:
    e = await call_fails(caller, target(stack, f"wazo-meeting-{meeting.uuid}"), "guest", "guest-pw")
    assert e.response.status == 403
    assert e.response.headers.get("reason") == 'SIP;cause=403;text="guest accounts may only dial meeting-guest"'


async def test_user_in_other_tenant_gets_404(stack: SipStack, caller: SipStack, meeting: Meeting) -> None:
    e = await call_fails(caller, target(stack, meeting.exten), "mallory", "mallory-pw")
    assert e.response.status == 404 and "no such meeting" in (e.response.headers.get("reason") or "")


async def test_user_dials_exten_and_uuid(stack: SipStack, caller: SipStack, meeting: Meeting) -> None:
    for exten in (meeting.exten, f"wazo-meeting-{meeting.uuid}"):
        d = await caller.invite(target(stack, exten), OFFER, credentials=DigestCredentials("alice", "alice-pw"))
        assert d.initial_response is not None and d.initial_response.body == CANNED_SDP
        await d.bye()


async def test_full_meeting_and_codec_mismatch(stack: SipStack, caller: SipStack, meeting: Meeting) -> None:
    e = await call_fails(
        caller, target(stack, "meeting-guest"), "guest", "guest-pw", offer=b"v=0\r\nm=video 1 x 96\r\n"
    )
    assert e.response.status == 488
    meeting.max_members = 0
    e = await call_fails(caller, target(stack, "meeting-guest"), "guest", "guest-pw")
    assert e.response.status == 486
    assert e.response.headers.get("reason") == 'SIP;cause=486;text="meeting is full"'


async def test_deleted_guest_account_no_longer_authenticates(
    stack: SipStack, caller: SipStack, accounts: Accounts
) -> None:
    d = await caller.invite(target(stack, "meeting-guest"), OFFER, credentials=DigestCredentials("guest", "guest-pw"))
    await d.bye()
    accounts.delete("guest")
    e = await call_fails(caller, target(stack, "meeting-guest"), "guest", "guest-pw")
    assert e.response.status == 403


async def test_wrong_password_is_403_and_no_credentials_401(stack: SipStack, caller: SipStack) -> None:
    e = await call_fails(caller, target(stack, "meeting-guest"), "guest", "wrong")
    assert e.response.status == 403
    with pytest.raises(CallFailed) as e2:
        await caller.invite(target(stack, "meeting-guest"), OFFER)
    assert e2.value.response.status == 401
    algorithms = [h.split("algorithm=")[1].split(",")[0] for h in e2.value.response.headers.get_all("www-authenticate")]
    assert algorithms == ["MD5"]


# -- digest on the wire ------------------------------------------------------------------------------------------
async def test_nonce_replay_and_stale_nonce(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    uri = f"sip:127.0.0.1:{port}"
    to = "<sip:alice@meetings.test>"
    contact = f"<sip:alice@127.0.0.1:{peer.port}>"
    peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="r1"), port)
    challenge = await peer.response()
    assert challenge.status == 401
    auth = authorization(challenge, "alice", "alice-pw", "REGISTER", uri)
    peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="r1", cseq=2, extra=[auth]), port)
    assert (await peer.response()).status == 200
    # the same Authorization (same nonce and nc) in a new transaction: a replay, not accepted but challenged anew
    peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="r1", cseq=3, extra=[auth]), port)
    replayed = await peer.response()
    assert replayed.status == 401 and "stale=true" in (replayed.headers.get("www-authenticate") or "")
    # an expired nonce gets a fresh challenge flagged stale
    old = stack.challenger.make_nonce(time.time() - 3600)
    stale = challenge.headers.get_all("www-authenticate")[0]
    stale = stale.replace(stale.split('nonce="')[1].split('"')[0], old)
    challenge.headers.set("WWW-Authenticate", stale)
    auth = authorization(challenge, "alice", "alice-pw", "REGISTER", uri)
    peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="r1", cseq=4, extra=[auth]), port)
    r = await peer.response()
    assert r.status == 401 and "stale=true" in (r.headers.get("www-authenticate") or "")


# -- registrar ---------------------------------------------------------------------------------------------------
async def register(
    stack: SipStack, peer: UdpPeer, contacts: list[str], expires: int | None = None, user: str = "alice", cseq: int = 1
) -> tuple[int, list[str]]:
    port = stack.udp.port  # type: ignore[union-attr]
    uri = f"sip:127.0.0.1:{port}"
    to = f"<sip:{user}@meetings.test>"
    extra = [f"Contact: {c}" for c in contacts] + ([f"Expires: {expires}"] if expires is not None else [])
    peer.send(request("REGISTER", uri, peer.port, to=to, call_id="reg", cseq=cseq, extra=extra), port)
    challenge = await peer.response()
    auth = authorization(challenge, "alice", "alice-pw", "REGISTER", uri)
    peer.send(request("REGISTER", uri, peer.port, to=to, call_id="reg", cseq=cseq + 1, extra=[*extra, auth]), port)
    r = await peer.response()
    return r.status, r.headers.values("contact")


async def test_registrar_contacts_expiry_and_wildcard(stack: SipStack, peer: UdpPeer) -> None:
    status, contacts = await register(stack, peer, ["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>;expires=60"], 120)
    assert status == 200 and len(contacts) == 2
    expiries = sorted(int(c.split("expires=")[1]) for c in contacts)
    assert 59 <= expiries[0] <= 60 and 119 <= expiries[1] <= 120
    assert {b.uri.host for b in stack.registrar.lookup("alice")} == {"10.0.0.1", "10.0.0.2"}
    status, contacts = await register(stack, peer, ["<sip:alice@10.0.0.1>;expires=0"], cseq=3)
    assert status == 200 and [b.uri.host for b in stack.registrar.lookup("alice")] == ["10.0.0.2"]
    status, _ = await register(stack, peer, ["*"], cseq=5)  # wildcard without Expires: 0 is refused
    assert status == 400
    status, contacts = await register(stack, peer, ["*"], 0, cseq=7)
    assert status == 200 and contacts == [] and stack.registrar.lookup("alice") == []
    status, _ = await register(stack, peer, ["<sip:alice@10.0.0.3>"], 5, cseq=9)
    assert status == 423


async def test_register_for_someone_else_is_403(stack: SipStack, peer: UdpPeer) -> None:
    status, _ = await register(stack, peer, ["<sip:x@10.0.0.1>"], user="guest")
    assert status == 403


async def test_options_out_of_dialog(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    peer.send(request("OPTIONS", f"sip:127.0.0.1:{port}", peer.port), port)
    r = await peer.response()
    assert r.status == 200 and "INVITE" in (r.headers.get("allow") or "")
    peer.send(request("SUBSCRIBE", f"sip:127.0.0.1:{port}", peer.port), port)
    assert (await peer.response()).status == 405
    peer.send(request("FOO", f"sip:127.0.0.1:{port}", peer.port), port)
    assert (await peer.response()).status == 501
    peer.send(request("BYE", f"sip:127.0.0.1:{port}", peer.port, to_tag="nope"), port)
    assert (await peer.response()).status == 481


async def test_garbage_answered_400_or_dropped(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    bad = request("OPTIONS", f"sip:127.0.0.1:{port}", peer.port).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    peer.send(bad, port)
    r = await peer.response()
    assert r.status == 400 and r.call_id == "call-1"
    peer.send(b"\x00\x01 not sip at all\r\n\r\n", port)
    assert await peer.silence(0.3) == []


# -- two stacks, a whole call ------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_call_with_in_dialog_requests_both_ways(
    stack: SipStack, caller: SipStack, plan: DialPlan, transport: str
) -> None:
    rec_a = Recorder(answer=b"v=0\r\ns=answer-from-a\r\n")
    dialog_a = await caller.invite(
        target(stack, "meeting-guest", transport),
        OFFER,
        credentials=DigestCredentials("guest", "guest-pw"),
        handler=rec_a,
    )
    assert dialog_a.state is DialogState.CONFIRMED
    assert dialog_a.initial_response is not None and dialog_a.initial_response.body == CANNED_SDP
    rec_b = plan.handlers[0]
    await asyncio.wait_for(rec_b.confirmed.wait(), 2)
    call = plan.calls[0]
    assert call.offer == OFFER and call.extension == "meeting-guest" and call.account.username == "guest"
    dialog_b = call.dialog
    assert dialog_b.flow.transport == transport.upper()

    # server -> client: MESSAGE (room events), re-INVITE (new video slots), INFO
    r = await dialog_b.message(b'{"type": "ConfbridgeWelcome", "channels": []}')
    assert r.status == 200 and rec_a.messages[0].body.startswith(b'{"type": "ConfbridgeWelcome"')
    answer = await dialog_b.reinvite(b"v=0\r\ns=offer-from-b\r\n")
    assert answer == b"v=0\r\ns=answer-from-a\r\n" and rec_a.offers == [b"v=0\r\ns=offer-from-b\r\n"]
    # client -> server: re-INVITE, UPDATE, INFO (DTMF)
    answer = await dialog_a.reinvite(b"v=0\r\ns=offer-from-a\r\n")
    assert answer == CANNED_SDP and rec_b.offers[-1] == b"v=0\r\ns=offer-from-a\r\n"
    assert await dialog_a.update(b"v=0\r\ns=update\r\n") == CANNED_SDP
    await dialog_a.info(b"Signal=5\r\nDuration=160\r\n")
    assert rec_b.infos[0].body.startswith(b"Signal=5")
    assert (await dialog_a.options()).status == 200
    assert rec_b.events[:2] == ["confirmed", "offer:INVITE"]

    # hang up from the server side
    await dialog_b.bye()
    await asyncio.wait_for(rec_a.terminated.wait(), 2)
    assert rec_a.reason == "remote-bye" and "bye" in rec_a.events
    assert rec_b.reason == "local-bye"
    assert stack.dialogs == {} and caller.dialogs == {}


async def test_outgoing_invite_cancelled(stack: SipStack, caller: SipStack, plan: DialPlan) -> None:
    plan.hold = True
    task = asyncio.create_task(
        caller.invite(target(stack, "meeting-guest"), OFFER, credentials=DigestCredentials("guest", "guest-pw"))
    )
    for _ in range(100):
        if plan.calls:
            break
        await asyncio.sleep(0.02)
    assert plan.calls
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(plan.cancel_seen.wait(), 3)
    assert plan.calls[0].state.value == "cancelled"
    with pytest.raises(Exception, match="cancelled"):
        plan.calls[0].answer(CANNED_SDP)


async def test_message_to_registered_user(stack: SipStack, caller: SipStack, peer: UdpPeer) -> None:
    # alice registers from the raw peer; the stack then sends her a MESSAGE at the registered contact
    status, _ = await register(stack, peer, [f"<sip:alice@127.0.0.1:{peer.port}>"], 60)
    assert status == 200
    task = asyncio.create_task(stack.message_user("alice", b'{"hello": 1}'))
    from signaling.message import SipRequest, parse_message

    msg = parse_message(await peer.recv())
    assert isinstance(msg, SipRequest) and msg.method == "MESSAGE" and msg.body == b'{"hello": 1}'
    peer.send(msg.create_response(200, to_tag="x").serialize(), stack.udp.port)  # type: ignore[union-attr]
    results = await task
    assert [r.status for r in results] == [200]
