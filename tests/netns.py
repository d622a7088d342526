"""A weak network for tests: a namespace joined to this one by a veth pair, shaped the ways real links are bad.

The test's peer (Chromium started through `WeakLink.command`, or a Python client whose sockets `udp_socket` binds
inside) sits in the namespace; the server listens on the veth's root-side address. This kernel has no ``netem``,
so: rate with ``tc ... tbf`` on both ends of the veth (each end shapes what it sends), random loss with iptables'
``statistic`` match and blocked UDP with iptables (each direction where it arrives). Delay is not made
(a relay would be needed); tbf's queue adds what a full link adds.

Everything lives in the namespace or on the veth, except the filter rules for what the namespace sends, which
carry its name: `close` deletes both, at the end of the test's ``with`` block whatever happened, and at exit if
the process is stopped first. A run that was
killed outright leaves a namespace named after its process id; the next `WeakLink.create` removes those whose
process is gone (never another running test's).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from bench.sfu.netns import VethNamespace
from sfu.ports import PortAllocator

PREFIX = "wn"
#: the private /30s the veth pairs take addresses from
FIRST_OCTETS = "10.231"
_NAME = re.compile(rf"^{PREFIX}(\d+)x\d+(?:ns|o)$")
_CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)


def available() -> str | None:
    """Why weak links cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (make system-test-deps installs Debian's iptables)"
    return None


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _root_rules() -> list[tuple[str, list[str]]]:
    """This namespace's INPUT rules that name a weak link in their comment: (the link's name, the rule)."""
    rules = []
    for line in _run(["iptables", "-w", "-S", "INPUT"]).splitlines():
        parts = line.split()
        if "--comment" in parts:
            name = parts[parts.index("--comment") + 1].strip('"')
            if _NAME.match(name):
                rules.append((name, parts[2:]))
    return rules


def _remove_root_rules(name: str) -> None:
    for owner, rule in _root_rules():
        if owner == name:
            subprocess.run(["iptables", "-w", "-D", "INPUT", *rule], capture_output=True)


def remove_leftovers() -> list[str]:
    """Delete the namespaces, root-side veths and filter rules of earlier runs whose process is gone; their names."""
    removed = []
    namespaces = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0] for line in _run(["ip", "-o", "link"]).splitlines()]
    rules = [name for name, _ in _root_rules()]
    own = os.getpid() % 100000
    for name in dict.fromkeys([*namespaces, *links, *rules]):
        match = _NAME.match(name)
        if match is None or int(match.group(1)) == own or _alive(int(match.group(1))):
            continue
        if name in namespaces:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        if name in links:
            subprocess.run(["ip", "link", "delete", name], capture_output=True)
        _remove_root_rules(name)
        removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


class WeakLink:
    """`inside_address` is the weak side's (the peer's), `outside_address` the server's side."""

    def __init__(self, space: VethNamespace) -> None:
        self.space = space
        self.rate_kbit: int | None = None
        self.loss = 0.0
        self.udp_blocked = False
        self._dropped_earlier = 0  # by rules since replaced

    @classmethod
    def create(cls) -> WeakLink:
        remove_leftovers()
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        link = cls(VethNamespace.create(prefix=PREFIX, first_octets=FIRST_OCTETS, tag=tag))
        atexit.register(link.close)
        return link

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def inside_address(self) -> str:
        return self.space.inside_address

    @property
    def outside_address(self) -> str:
        return self.space.outside_address

    def command(self, *args: str) -> list[str]:
        """`args` to run inside the namespace (``ip netns exec`` execs it: the process id is the command's)."""
        return self.space.command(*args)

    # shaping

    def limit_rate(self, kbit: int | None, burst_bytes: int = 16_000, queue_ms: int = 300) -> None:
        """Both directions at `kbit` kbit/s (None: no limit); tbf holds at most `queue_ms` of packets, then drops."""
        for prefix, device in (([], self.space.outside), (self.command(), self.space.inside)):
            if kbit is None:
                if self.rate_kbit is not None:
                    _run([*prefix, "tc", "qdisc", "del", "dev", device, "root"])
                continue
            tbf = ["tbf", "rate", f"{kbit}kbit", "burst", str(burst_bytes), "latency", f"{queue_ms}ms"]
            _run([*prefix, "tc", "qdisc", "replace", "dev", device, "root", *tbf])
        self.rate_kbit = kbit

    def queued_bytes(self) -> int:
        """Bytes waiting in the rate limiter on their way into the namespace (0 when the rate is not limited)."""
        qdiscs = json.loads(_run(["tc", "-s", "-j", "qdisc", "show", "dev", self.space.outside]))
        return sum(int(qdisc.get("backlog", 0)) for qdisc in qdiscs)

    def set_loss(self, probability: float) -> None:
        """Drop this share of the packets at random, each direction on its own (0: none)."""
        self.loss = probability
        self._apply_filters()

    def block_udp(self, blocked: bool = True) -> None:
        """No UDP in or out of the namespace (a firewall that lets only TCP through)."""
        self.udp_blocked = blocked
        self._apply_filters()

    def _rules(self) -> list[list[str]]:
        rules = []
        if self.udp_blocked:
            rules.append(["-p", "udp", "-j", "DROP"])
        if self.loss > 0:
            rules.append(["-m", "statistic", "--mode", "random", "--probability", f"{self.loss:.4f}", "-j", "DROP"])
        return rules

    def _apply_filters(self) -> None:
        # Each direction is filtered where its packets arrive: a packet dropped on its way out of a local socket
        # fails that socket's sendto (EPERM), which no real network does. What reaches the namespace is dropped in
        # its INPUT chain; what leaves it, on this side's INPUT chain for packets from the veth, with a
        # comment naming the link (`close` and `remove_leftovers` delete them by it).
        inside = self.command("iptables", "-w")
        self._dropped_earlier = self.dropped_packets()
        _run([*inside, "-F", "INPUT"])
        _remove_root_rules(self.name)
        for rule in self._rules():
            _run([*inside, "-A", "INPUT", *rule])
            tagged = ["-i", self.space.outside, "-m", "comment", "--comment", self.name, *rule]
            _run(["iptables", "-w", "-A", "INPUT", *tagged])

    def dropped_packets(self) -> int:
        """Packets the filters dropped so far (loss and blocking, both directions)."""
        total = self._dropped_earlier
        for command in (self.command("iptables"), ["iptables"]):
            out = _run([*command, "-w", "-L", "INPUT", "-v", "-n", "-x"])
            for line in out.splitlines():
                fields = line.split()
                if len(fields) > 2 and fields[2] == "DROP" and fields[0].isdigit():
                    if command[0] == "ip" or self.name in line:
                        total += int(fields[0])
        return total

    # a Python peer inside

    @contextmanager
    def entered(self) -> Iterator[None]:
        """This thread in the namespace (sockets created meanwhile stay in it). Never await inside."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def udp_socket(self, address: str | None = None) -> socket.socket:
        """A non-blocking UDP socket bound inside the namespace (on the inside address, any port)."""
        with self.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((address or self.inside_address, 0))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def ports(self) -> PortAllocator:
        """Sockets inside, for a test peer's ICE (`sfu.aiortc_adapter.gather_host_candidates`)."""
        return _NamespacePorts(self)

    def close(self) -> None:
        """Idempotent: the namespace goes, and with it the veth pair, its qdiscs and its filters; then the filters
        on this side."""
        self.space.close()
        _remove_root_rules(self.name)
        atexit.unregister(self.close)


class _NamespacePorts(PortAllocator):
    def __init__(self, link: WeakLink) -> None:
        super().__init__(1024, 65535)
        self.link = link

    def bind(self, address: str, *, even: bool = False) -> socket.socket:
        return self.link.udp_socket(address)


@contextmanager
def weak_link() -> Iterator[WeakLink]:
    """A `WeakLink` for the block, removed at its end whatever happened (skips the test where it cannot be made)."""
    import pytest

    reason = available()
    if reason is not None:
        pytest.skip(reason)
    link = WeakLink.create()
    try:
        yield link
    finally:
        link.close()
