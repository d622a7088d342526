"""UDP sockets bound inside the configured RTP port range."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

from .errors import SfuError

#: tries at an even port whose odd neighbour is free before giving up
PAIR_ATTEMPTS = 64


class PortRangeExhausted(SfuError):
    """No free port is left in the configured range."""


class PortAllocator:
    """Binds UDP sockets on ports in [port_min, port_max], trying random ports first then scanning."""

    def __init__(self, port_min: int, port_max: int) -> None:
        if port_min > port_max:
            raise ValueError("port_min must not exceed port_max")
        self.port_min = port_min
        self.port_max = port_max

    def bind(self, address: str, *, even: bool = False) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        span = self.port_max - self.port_min + 1
        start = random.randrange(span)
        for i in range(span):
            port = self.port_min + (start + i) % span
            if even and port % 2:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            return sock
        raise PortRangeExhausted(f"no free UDP port on {address} in {self.port_min}-{self.port_max}")

    def bind_pair(self, address: str) -> tuple[socket.socket, socket.socket]:
        """An even port for RTP and the odd one above it for RTCP (RFC 3550 section 11), both bound, both in range."""
        return bind_rtp_pair(address, lambda: self.bind(address, even=True), highest=self.port_max)


def bind_rtp_pair(
    address: str, bind_even: Callable[[], socket.socket] | None = None, highest: int = 65535
) -> tuple[socket.socket, socket.socket]:
    """Bind RTP on an even port (from `bind_even`, or any the system gives) and RTCP on the port above it, at most
    `highest`."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(PAIR_ATTEMPTS):
        if bind_even is not None:
            rtp = bind_even()
        else:
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtp.bind((address, 0))
        port = rtp.getsockname()[1]
        if port % 2 or port + 1 > highest:
            rtp.close()
            continue
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtcp.bind((address, port + 1))
        except OSError:
            rtcp.close()
            rtp.close()
            continue
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    raise PortRangeExhausted(f"no free pair of UDP ports on {address}")
