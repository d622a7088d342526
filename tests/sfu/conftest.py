from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfu import SFU, MediaSettings


@pytest.fixture
def settings() -> MediaSettings:
    return MediaSettings(host_addresses=("127.0.0.1",), rtp_port_min=31000, rtp_port_max=31999)


@pytest.fixture
async def sfu(settings: MediaSettings) -> AsyncIterator[SFU]:
    server = SFU(settings)
    yield server
    await server.close()
