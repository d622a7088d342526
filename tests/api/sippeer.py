"""A SIP user agent on a plain UDP socket, bound to a chosen loopback address: one request at a time."""

from __future__ import annotations

import asyncio
import socket

from signaling.digest import DigestClient, DigestCredentials
from signaling.message import SipResponse, parse_message
from tests.signaling.raw import request


class SipPeer:
    def __init__(self, host: str, server_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.server = ("127.0.0.1", server_port)

    async def ask(self, data: bytes) -> SipResponse:
        """Send a request; its final response (provisional ones skipped)."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, self.server)
        while True:
            message = parse_message(await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 5))
            assert isinstance(message, SipResponse)
            if message.status >= 200:
                return message

    def register_request(self, username: str, call_id: str, cseq: int = 1, extra: list[str] | None = None) -> bytes:
        return request(
            "REGISTER",
            "sip:meetings.local",
            self.port,
            call_id=call_id,
            cseq=cseq,
            to=f"<sip:{username}@meetings.local>",
            contact=f"<sip:{username}@127.0.0.1:{self.port}>",
            extra=extra,
        )

    async def register(self, username: str, password: str, call_id: str) -> SipResponse:
        """REGISTER, answer the challenge with these credentials: the final response to that."""
        challenge = await self.ask(self.register_request(username, call_id))
        assert challenge.status == 401
        client = DigestClient(DigestCredentials(username, password))
        value = client.authorization(challenge.headers.get_all("www-authenticate")[0], "REGISTER", "sip:meetings.local")
        return await self.ask(self.register_request(username, call_id, 2, [f"Authorization: {value}"]))

    def close(self) -> None:
        self.sock.close()
