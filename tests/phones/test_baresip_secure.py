"""baresip over SIP over TLS with SDES-SRTP (its `srtp` module, mediaenc=srtp-mand: encrypted media or no call):
a phone on the internet joins, hears the room and is heard, and is hung up with a Reason over TLS."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.certificates import certificate_in, secure_phone_settings
from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials
from tests.phones.baresip import Baresip, account_line
from tests.phones.meeting import (
    PHONE_TONE,
    ROOM_TONE,
    assert_browser_hears_the_phone,
    delete_meeting,
    meeting_with_browser,
    sip_server,
)
from tests.phones.phone import heard
from tests.waiting import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.phones,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian's baresip-core) is not installed"),
]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return certificate_in(tmp_path)


@pytest.fixture
def settings(database_url: str, certificate: tuple[Path, Path]) -> Any:
    return secure_phone_settings(database_url, certificate)


async def test_baresip_over_tls_with_srtp(
    api: Api, room: Room, baresip: Baresip, certificate: tuple[Path, Path]
) -> None:
    meeting, token, browser = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await baresip.start(extra_config=("module srtp.so", f"sip_cafile {certificate[0]}"))
    account = account_line(*guest_credentials(meeting), domain, sip_server(api, "tls"), "tls", "srtp-mand")
    await baresip.add_account(account)
    await until(lambda: bool(baresip.saw("REGISTER_OK")), 10, "baresip registered over TLS")
    assert (await baresip.command("dial meeting-guest"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_ESTABLISHED")), 10, "baresip's call established")
    log = baresip.log_text()
    invite = log[log.index("\nINVITE sip:") :]
    assert "SIP/2.0/TLS" in invite[:800] and "RTP/SAVP" in invite and "a=crypto:" in invite, invite[:1200]

    await asyncio.sleep(1.0)  # past the first mixes
    await assert_browser_hears_the_phone(browser)

    await delete_meeting(api, meeting, token)
    await until(lambda: bool(baresip.saw("CALL_CLOSED")), 10, "baresip's call closed")
    assert heard(baresip.recording(), ROOM_TONE) > 0.2 and heard(baresip.recording(), PHONE_TONE) < 0.02
