"""UDP sockets bound inside the configured RTP port range."""

from __future__ import annotations

import random
import socket

from .errors import SfuError


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
