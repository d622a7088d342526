"""The stack against sipp, a real SIP peer: REGISTER with digest (UDP, TCP), calls, CANCEL, loss."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from signaling.stack import SipStack

from .support import DialPlan

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian package sip-tester) is not installed"),
]

SCENARIOS = Path(__file__).parent / "sipp"


async def run_sipp(
    tmp_path: Path, scenario: str, port: int, *args: str, transport: str = "u1", calls: int = 3, limit: int = 20
) -> tuple[int, str]:
    timeout = limit
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-m",
        str(calls),
        "-r",
        str(max(calls, 5)),
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-trace_screen",
        *args,
        f"127.0.0.1:{port}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    text = out.decode(errors="replace") + _logs(tmp_path)
    assert proc.returncode is not None
    return proc.returncode, text


def _logs(tmp_path: Path) -> str:
    text = ""
    for f in tmp_path.glob("*_errors.log"):
        text += "\n--- errors ---\n" + f.read_text(errors="replace")[:4000]
    for f in tmp_path.glob("*_screen.log"):
        text += "\n--- screen ---\n" + f.read_text(errors="replace")[-3000:]
    return text


def successful(text: str) -> int:
    for line in text.splitlines():
        if line.strip().startswith("Successful call"):
            return int(line.split("|")[-1].strip())
    return -1


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_register_with_digest(stack: SipStack, tmp_path: Path, transport: str) -> None:
    port = stack.udp.port if transport == "u1" else stack.tcp.port  # type: ignore[union-attr]
    rc, out = await run_sipp(
        tmp_path, "register_auth.xml", port, "-s", "alice", "-au", "alice", "-ap", "alice-pw", transport=transport
    )
    assert rc == 0, out
    assert successful(out) == 3, out
    bindings = stack.registrar.lookup("alice")
    assert len(bindings) == 1  # same contact each time: one binding, refreshed
    assert bindings[0].uri.user == "alice"
    assert 290 <= bindings[0].expires_in() <= 300


async def test_register_wrong_password_fails(stack: SipStack, tmp_path: Path) -> None:
    rc, out = await run_sipp(
        tmp_path, "register_auth.xml", stack.udp.port, "-s", "alice", "-au", "alice", "-ap", "nope", calls=1, limit=5
    )  # type: ignore[union-attr]
    assert rc != 0
    assert "403" in out
    assert stack.registrar.lookup("alice") == []


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_call_invite_ack_bye(stack: SipStack, plan: DialPlan, tmp_path: Path, transport: str) -> None:
    port = stack.udp.port if transport == "u1" else stack.tcp.port  # type: ignore[union-attr]
    rc, out = await run_sipp(
        tmp_path, "call_auth.xml", port, "-s", "meeting-guest", "-au", "guest", "-ap", "guest-pw", transport=transport
    )
    assert rc == 0, out
    assert successful(out) == 3, out
    assert len(plan.handlers) == 3
    for h in plan.handlers:
        assert h.events[0] == "confirmed"
        assert "bye" in h.events and h.reason == "remote-bye", h.events
    assert all(c.extension == "meeting-guest" for c in plan.calls)
    assert stack.dialogs == {}


async def test_cancel_before_answer(stack: SipStack, plan: DialPlan, tmp_path: Path) -> None:
    plan.hold = True
    rc, out = await run_sipp(
        tmp_path, "cancel_auth.xml", stack.udp.port, "-s", "meeting-guest", "-au", "guest", "-ap", "guest-pw"
    )  # type: ignore[union-attr]
    assert rc == 0, out
    assert successful(out) == 3, out
    assert len(plan.cancelled) == 3
    assert all(c.cancelled.is_set() for c in plan.cancelled)
    assert stack._calls == {}


async def test_calls_complete_under_packet_loss(stack: SipStack, plan: DialPlan, tmp_path: Path) -> None:
    rc, out = await run_sipp(
        tmp_path,
        "call_auth.xml",
        stack.udp.port,  # type: ignore[union-attr]
        "-s",
        "meeting-guest",
        "-au",
        "guest",
        "-ap",
        "guest-pw",
        "-lost",
        "10",
        calls=10,
        limit=30,
    )
    assert rc == 0, out
    assert successful(out) == 10, out
    # every answered call was confirmed by its ACK and hung up by BYE, losses notwithstanding
    assert len(plan.handlers) >= 10
    # A call is confirmed by its ACK; if sipp's ACK is the lost packet, its BYE (sent right after) can arrive
    # before the ACK's retransmission, and a BYE before the ACK ends the dialog all the same (section 15).
    answered = [h for h in plan.handlers if "confirmed" in h.events or "bye" in h.events]
    assert len(answered) >= 10, "; ".join(",".join(h.events) for h in plan.handlers)
    assert sum("confirmed" in h.events for h in plan.handlers) >= 8
