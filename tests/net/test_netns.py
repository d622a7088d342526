"""The weak-link harness itself: it shapes what it says (rate, loss, UDP blocked, each way), and leaves nothing
behind, even after a run that was killed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.netns import WeakLink, remove_leftovers, weak_link


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(0.3)
    return sock


def _drain(sock: socket.socket) -> int:
    received = 0
    try:
        while True:
            received += len(sock.recv(4096))
    except TimeoutError:
        return received


def test_rate_loss_and_blocking_each_way(link: WeakLink) -> None:
    outside = _receiver(link.outside_address)
    inside = link.udp_socket()
    inside.setblocking(True)

    # rate: 2 s of 1,000-byte datagrams at 2 Mbit/s into a 400 kbit/s link: about 100 kB come through
    link.limit_rate(400, queue_ms=100)
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        inside.sendto(b"x" * 1000, outside.getsockname())
        time.sleep(0.004)
    received = _drain(outside)
    assert 60_000 < received < 140_000, received
    link.limit_rate(None)

    # loss: about half of 400 datagrams each way
    link.set_loss(0.5)
    for _ in range(400):
        inside.sendto(b"up", outside.getsockname())
    up = _drain(outside) // 2
    inside_receiver = link.udp_socket()
    inside_receiver.settimeout(0.3)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(400):
        sender.sendto(b"down", inside_receiver.getsockname())
    down = _drain(inside_receiver) // 4
    assert 120 < up < 280 and 120 < down < 280, (up, down)
    assert 300 < link.dropped_packets() < 500  # 800 sent, half dropped

    # UDP blocked: nothing either way; TCP still goes
    link.set_loss(0)
    link.block_udp()
    inside.sendto(b"up", outside.getsockname())
    sender.sendto(b"down", inside_receiver.getsockname())
    assert _drain(outside) == 0 and _drain(inside_receiver) == 0
    server = socket.create_server((link.outside_address, 0))
    done = subprocess.run(
        link.command(sys.executable, "-c", f"import socket; socket.create_connection({server.getsockname()!r}, 2)"),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    for sock in (outside, inside, inside_receiver, sender, server):
        sock.close()


CRASHING_RUN = """
import os
from tests.netns import WeakLink
link = WeakLink.create()
link.set_loss(0.1)
link.limit_rate(1000)
print(link.name, link.space.outside, flush=True)
os._exit(1)  # as if killed: no clean-up at all
"""


def test_a_killed_run_s_namespace_veth_and_rules_are_removed_by_the_next(link: WeakLink) -> None:
    done = subprocess.run([sys.executable, "-c", CRASHING_RUN], capture_output=True, text=True, cwd=".")
    name, veth = done.stdout.split()
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout

    removed = remove_leftovers()
    assert name in removed and link.name not in removed  # a live run's link stays
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert veth not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert link.name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_close_removes_everything_even_when_the_test_fails() -> None:
    made: list[WeakLink] = []
    with pytest.raises(RuntimeError), weak_link() as link:
        made.append(link)
        link.set_loss(0.2)
        raise RuntimeError("the test failed")
    name = made[0].name
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
