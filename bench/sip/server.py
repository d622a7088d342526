"""A standalone SIP stack for benchmarks: accounts user0..userN (password "secret"), every INVITE answered.

    .venv/bin/python bench/sip/server.py --port 5070 [--users 1000]

Prints "READY <udp port> <tcp port>" when listening. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from signaling.call import IncomingCall
from signaling.dialog import BaseDialogHandler
from signaling.stack import SipAccount, SipStack, StackConfig

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Accounts:
    def __init__(self, users: int) -> None:
        self.users = {f"user{i}": SipAccount(f"user{i}", "secret") for i in range(users)}

    async def lookup(self, username: str) -> SipAccount | None:
        return self.users.get(username)


class Answerer:
    async def on_invite(self, call: IncomingCall) -> None:
        call.answer(SDP, BaseDialogHandler())

    def on_cancel(self, call: IncomingCall) -> None:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5070)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stack = SipStack(StackConfig(domain="bench.local"), Accounts(args.users), Answerer())
    udp = await stack.start_udp(args.host, args.port)
    tcp = await stack.start_tcp(args.host, args.port)
    print(f"READY {udp.port} {tcp.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stack.close()


if __name__ == "__main__":
    asyncio.run(main())
