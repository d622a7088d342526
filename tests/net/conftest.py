"""What the network tests share: a shaped link (a network namespace behind a veth pair, removed after the test)
and an SFU whose media address is on the outside of that link. A module names its own RTP ports (`RTP_PORTS`):
the modules run beside each other on two workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sfu import SFU
from sfu.settings import MediaSettings
from tests.netns import WeakLink, weak_link


@pytest.fixture
def link() -> Iterator[WeakLink]:
    with weak_link() as made:
        yield made


@pytest.fixture
async def sfu(request: pytest.FixtureRequest, link: WeakLink) -> AsyncIterator[SFU]:
    low, high = request.module.RTP_PORTS
    server = SFU(MediaSettings(host_addresses=(link.outside_address,), rtp_port_min=low, rtp_port_max=high))
    yield server
    await server.close()
