"""Eager start of the per-request coroutines: no task when nothing suspends, the same outcome when something does."""

from __future__ import annotations

import asyncio

import pytest

from signaling.eager import start_eagerly
from signaling.stack import SipAccount, SipStack, StackConfig

from .conftest import FAST, UdpPeer
from .raw import authorization, request
from .support import Accounts


async def test_a_coroutine_that_never_suspends_finishes_in_the_caller() -> None:
    seen: list[str] = []

    async def work() -> None:
        seen.append("ran")

    assert start_eagerly(work()) is None
    assert seen == ["ran"]


async def test_an_exception_before_any_suspension_reaches_the_caller() -> None:
    async def work() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        start_eagerly(work())


async def test_a_suspended_coroutine_is_resumed_by_its_task_with_results_and_errors() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    steps: list[object] = []

    async def work() -> int:
        steps.append("before")
        value = await fut  # suspends: the rest runs in the task
        steps.append(value)
        await asyncio.sleep(0)  # a bare yield is passed on too
        try:
            await asyncio.sleep(0.01)
            raise ValueError("after")
        finally:
            steps.append("finally")

    rest = start_eagerly(work())
    assert rest is not None and steps == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    fut.set_result(7)
    with pytest.raises(ValueError, match="after"):
        await task
    assert steps == ["before", 7, "finally"]


async def test_cancelling_the_task_cancels_the_suspended_coroutine() -> None:
    cleaned: list[str] = []
    started = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0)
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise

    rest = start_eagerly(work())
    assert rest is not None
    task = asyncio.ensure_future(rest)
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled"]


async def test_a_suspended_coroutine_result_is_returned() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 42

    rest = start_eagerly(work())
    assert rest is not None
    assert await rest == 42


class SlowAccounts(Accounts):
    """A credential store that really suspends (as a database lookup does)."""

    async def lookup(self, username: str) -> SipAccount | None:
        await asyncio.sleep(0.01)
        return await super().lookup(username)


@pytest.mark.parametrize("slow", [False, True])
async def test_authenticated_register_with_a_lookup_that_does_or_does_not_suspend(slow: bool) -> None:
    accounts = SlowAccounts() if slow else Accounts()
    accounts.add("alice", "alice-pw")
    stack = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts)
    await stack.start_udp("127.0.0.1", 0)
    peer = UdpPeer()
    spawned: list[object] = []
    spawn = stack._spawn

    def counting_spawn(coro):  # type: ignore[no-untyped-def]
        spawned.append(coro)
        return spawn(coro)

    stack._spawn = counting_spawn  # type: ignore[method-assign]
    try:
        port = stack.udp.port  # type: ignore[union-attr]
        uri = f"sip:127.0.0.1:{port}"
        to = "<sip:alice@meetings.test>"
        contact = f"<sip:alice@127.0.0.1:{peer.port}>"
        peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="e1"), port)
        challenge = await peer.response()
        assert challenge.status == 401
        auth = authorization(challenge, "alice", "alice-pw", "REGISTER", uri)
        peer.send(request("REGISTER", uri, peer.port, to=to, contact=contact, call_id="e1", cseq=2, extra=[auth]), port)
        ok = await peer.response()
        assert ok.status == 200 and ok.headers.values("contact")
        assert accounts.lookups == 1
        assert len(spawned) == (1 if slow else 0)  # a task only for the lookup that suspended
        wrong = authorization(challenge, "alice", "bad", "REGISTER", uri)
        peer.send(request("REGISTER", uri, peer.port, to=to, call_id="e1", cseq=3, extra=[wrong]), port)
        assert (await peer.response()).status == 403
    finally:
        peer.close()
        await stack.close()
