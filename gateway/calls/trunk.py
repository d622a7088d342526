"""Inbound trunk: Asterisk (or another PBX) routing its phones' calls to meetings on the gateway.

Each configured trunk peer (config.yaml `asterisk.trunk_peers`) is trusted one of two ways:
- a peer given only a `host` is trusted by source address: its INVITEs over UDP or TCP are taken without a digest
  challenge (never over WebSocket);
- a peer given a `username` and `password` answers the usual digest challenge with them, from wherever it calls.
Either way the call is a `TrunkLine`: the dial plan lets it reach any meeting by `wazo-meeting-{uuid}` or exten.
Any other caller is an ordinary SIP client: challenged, and refused unless it is a known account.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

from gateway.config import TrunkPeer
from signaling.stack import SipAccount

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrunkLine:
    """A call from a trunk peer: `peer` is the configured host it matched."""

    peer: str


def _address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class TrunkPeers:
    """The configured peers, as the stack's SourceTrust and as accounts for the credential store."""

    def __init__(self, peers: list[TrunkPeer]) -> None:
        self._peers = list(peers)
        self._by_username = {p.username: p for p in self._peers if p.username and p.password}
        self._trusted: dict[str, str] = {}
        for peer in self._peers:
            if not peer.username:
                address = _address(peer.host)
                if address is not None:
                    self._trusted[address] = peer.host

    def __bool__(self) -> bool:
        return bool(self._peers)

    async def resolve(self) -> None:
        """Look up address-trusted peers given by name (once, at start-up)."""
        loop = asyncio.get_running_loop()
        for peer in self._peers:
            if peer.username or _address(peer.host) is not None:
                continue
            try:
                infos = await loop.getaddrinfo(peer.host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                logger.warning("trunk peer %s: cannot resolve (%s); its calls will be challenged", peer.host, exc)
                continue
            for info in infos:
                self._trusted[str(info[4][0])] = peer.host

    # signaling.stack.SourceTrust
    def account_for_source(self, host: str, transport: str) -> SipAccount | None:
        peer = self._trusted.get(host)
        if peer is None:
            return None
        return SipAccount(f"trunk:{peer}", "", TrunkLine(peer))

    def account_for_username(self, username: str) -> SipAccount | None:
        peer = self._by_username.get(username)
        if peer is None or peer.password is None:
            return None
        return SipAccount(username, peer.password, TrunkLine(peer.host))
