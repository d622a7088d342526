"""In-process cost of an authenticated REGISTER (401 challenge, REGISTER with digest, 200), no sipp.

    .venv/bin/python bench/sip/inproc.py [--n 5000] [--repeat 5] [--profile out.prof]

The stack listens on a real UDP socket and a real client socket talks to it; each datagram is handed straight to
`stack.receive(data, flow)` (the transport's receiver, with the flow the UDP transport would make), the responses
go out through the real UDP transport and are read back from the client socket. The client's own work (building
the requests, reading the answers, the MD5 digest) is timed apart and subtracted, so the figure is the server's
CPU per registration: 2 requests parsed, 2 responses built and sent, one nonce, one digest check, one registrar
update, and the transactions with their timers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from signaling.stack import SipAccount, SipStack, StackConfig

REALM = "bench.local"


class Accounts:
    def __init__(self, users: int) -> None:
        self.users = {f"user{i}": SipAccount(f"user{i}", "secret") for i in range(users)}

    async def lookup(self, username: str) -> SipAccount | None:
        return self.users.get(username)


def register(port: int, cport: int, i: int, cseq: int, auth: str = "") -> bytes:
    return (
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK-{i}-{cseq};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:user1@127.0.0.1>;tag={i}SIPpTag00\r\n"
        f"To: <sip:user1@127.0.0.1>\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:user1@127.0.0.1:{cport};transport=UDP>\r\n"
        f"Expires: 300\r\n{auth}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def authorization(response: bytes, port: int) -> str:
    start = response.index(b'nonce="') + 7
    nonce = response[start : response.index(b'"', start)].decode()
    uri = f"sip:127.0.0.1:{port}"
    ha1 = hashlib.md5(f"user1:{REALM}:secret".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    digest = hashlib.md5(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="user1", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{digest}", algorithm=MD5, cnonce="abc", qop=auth, nc=00000001\r\n'
    )


async def run(n: int, profile: cProfile.Profile | None = None) -> float:
    """CPU seconds of the server side per registration."""
    # one client address: the per-source transaction cap is lifted, as for sipp in server.py
    stack = SipStack(StackConfig(domain=REALM, max_transactions_per_source=10**9, max_transactions=10**9), Accounts(10))
    udp = await stack.start_udp("127.0.0.1", 0)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    cport = client.getsockname()[1]
    port = udp.port
    flow = udp.flow_to("127.0.0.1", cport)
    receive = stack.receive
    pt = time.process_time
    client_cpu = 0.0
    try:
        if profile is not None:
            profile.enable()
        t0 = pt()
        for i in range(n):
            c0 = pt()
            first = register(port, cport, i, 1)
            client_cpu += pt() - c0
            receive(first, flow)
            c0 = pt()
            challenge = client.recv(65535)
            assert challenge.startswith(b"SIP/2.0 401"), challenge[:40]
            second = register(port, cport, i, 2, authorization(challenge, port))
            client_cpu += pt() - c0
            receive(second, flow)
            for _ in range(10):  # the credential lookup may run as a task: let it finish
                try:
                    c0 = pt()
                    ok = client.recv(65535)
                    client_cpu += pt() - c0
                    break
                except BlockingIOError:
                    client_cpu += pt() - c0
                    await asyncio.sleep(0)
            else:
                raise AssertionError("no answer to the authenticated REGISTER")
            assert ok.startswith(b"SIP/2.0 200"), ok[:80]
        total = pt() - t0
        if profile is not None:
            profile.disable()
    finally:
        client.close()
        await stack.close()
    return (total - client_cpu) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", help="write a cProfile of one run here (and print the top functions)")
    args = ap.parse_args()
    if args.profile:
        prof = cProfile.Profile()
        asyncio.run(run(args.n, prof))
        prof.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
        return
    runs = [asyncio.run(run(args.n)) * 1e6 for _ in range(args.repeat)]
    med = statistics.median(runs)
    print(
        f"in-process authenticated REGISTER: {med:.0f} us server CPU per registration "
        f"(median of {args.repeat} x {args.n}; runs {', '.join(f'{r:.0f}' for r in runs)}; "
        f"{1e6 / med:.0f}/s per core)"
    )


if __name__ == "__main__":
    main()
