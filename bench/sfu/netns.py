"""A network namespace joined to this one by a veth pair, for servers whose ICE ignores loopback (Janus's libnice).

Both servers of the side-by-side benchmark run inside it, the load generator outside: the media crosses the
same veth for both. Created with `ip` (iproute2, run as root); `close()` deletes the namespace, which deletes
the veth pair with it.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], check=True, capture_output=True, text=True).stdout
    return [ipaddress.IPv4Interface(line.split()[3]).network for line in out.splitlines()]


def _free_network(first_octets: str) -> ipaddress.IPv4Network:
    """A /30 in `first_octets`.x.0 (e.g. "10.213") that no interface of this namespace uses."""
    taken = _taken_networks()
    start = os.getpid() % 200
    for third in [*range(start, 256), *range(start)]:
        for fourth in range(0, 256, 4):
            network = ipaddress.IPv4Network(f"{first_octets}.{third}.{fourth}/30")
            if not any(network.overlaps(other) for other in taken):
                return network
    raise RuntimeError(f"no free {first_octets}.x.y/30 network for a veth pair")


@dataclass
class VethNamespace:
    """`inside` is the namespace end's name and address (the servers'), `outside` the root end's (the peers')."""

    name: str
    inside: str
    outside: str
    inside_address: str
    outside_address: str

    @classmethod
    def create(cls, prefix: str = "sb", first_octets: str = "10.213", tag: str | None = None) -> VethNamespace:
        """Names start with `prefix` (then the process id, or `tag`); addresses are a free /30 of `first_octets`."""
        tag = prefix + (tag if tag is not None else str(os.getpid() % 100000))  # interface names: 15 characters
        network = _free_network(first_octets)
        inside_address, outside_address = (str(host) for host in network.hosts())
        space = cls(f"{tag}ns", f"{tag}i", f"{tag}o", inside_address, outside_address)
        try:
            _ip("netns", "add", space.name)
            _ip("link", "add", space.outside, "type", "veth", "peer", "name", space.inside)
            _ip("link", "set", space.inside, "netns", space.name)
            _ip("addr", "add", f"{outside_address}/30", "dev", space.outside)
            _ip("link", "set", space.outside, "up")
            space.run("ip", "addr", "add", f"{inside_address}/30", "dev", space.inside)
            space.run("ip", "link", "set", space.inside, "up")
            space.run("ip", "link", "set", "lo", "up")
        except BaseException:
            space.close()
            raise
        return space

    def command(self, *args: str) -> list[str]:
        """`args` run inside the namespace (`ip netns exec` execs it: the process id is the command's own)."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str) -> None:
        subprocess.run(self.command(*args), check=True, capture_output=True, text=True)

    def close(self) -> None:
        """Idempotent: removes the namespace (and so the veth pair), and the root end if it was left behind."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.outside], capture_output=True)
