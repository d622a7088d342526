"""A standalone SIP stack for benchmarks and hostile-traffic tests: accounts user0..userN (password "secret"),
every INVITE answered.

    .venv/bin/python bench/sip/server.py --port 5070 [--users 1000] [--ws] [--log-level INFO] [--caps default]

Prints "READY <udp port> <tcp port> <websocket port or 0>" when listening (SIP over WebSocket at /ws). Runs until
SIGTERM/SIGINT. The transaction caps are lifted unless `--caps default`: sipp loads from one source address.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

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
    parser.add_argument("--ws", action="store_true", help="also serve SIP over WebSocket (random port)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--caps", choices=["lifted", "default"], default="lifted")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    config = StackConfig(domain="bench.local")
    if args.caps == "lifted":
        config = StackConfig(domain="bench.local", max_transactions_per_source=10**9, max_transactions=10**9)
    stack = SipStack(config, Accounts(args.users), Answerer())
    udp = await stack.start_udp(args.host, args.port)
    tcp = await stack.start_tcp(args.host, args.port)
    runner: web.AppRunner | None = None
    ws_port = 0
    if args.ws:
        app = web.Application()
        app.router.add_get("/ws", stack.websocket.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, 0)
        await site.start()
        ws_port = int(runner.addresses[0][1])
    print(f"READY {udp.port} {tcp.port} {ws_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stack.close()
    if runner is not None:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
