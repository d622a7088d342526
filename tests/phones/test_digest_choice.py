"""Why `sip.digest_algorithms` is MD5 alone by default, seen with the real phones: offered SHA-256 before MD5,
linphone answers SHA-256 and registers, while baresip 1.0 gives up without sending credentials."""

from __future__ import annotations

import shutil

import pytest

from gateway.config import Settings
from tests.conftest import Api, make_settings
from tests.e2e.conftest import guest_credentials
from tests.phones.baresip import Baresip, account_line
from tests.phones.linphone import Linphone, account
from tests.phones.meeting import sip_server
from tests.waiting import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.phones,
    pytest.mark.skipif(
        shutil.which("baresip") is None or shutil.which("linphonec") is None,
        reason="baresip-core and linphone-cli (Debian) are not installed",
    ),
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, MEETINGS_SIP__DIGEST_ALGORITHMS="[SHA-256, MD5]")


async def test_sha256_first_suits_linphone_and_locks_out_baresip(
    api: Api, linphone: Linphone, baresip: Baresip
) -> None:
    _, token = await api.create_user("alice")
    guest = guest_credentials(await api.create_meeting(token))
    domain = api.services.settings.sip.domain
    await linphone.start(account(*guest, domain, sip_server(api, "udp"), "udp"))  # waits for its registration
    answers = [line for line in linphone.sip_log().splitlines() if line.startswith("Authorization:")]
    assert answers and all("algorithm=SHA-256" in line for line in answers)

    await baresip.start()
    await baresip.add_account(account_line(*guest, domain, sip_server(api, "udp"), "udp"))
    await until(lambda: bool(baresip.saw("REGISTER_FAIL")), 10, "baresip giving up")
    assert baresip.saw("REGISTER_FAIL")[0]["param"] == "Function not implemented"
    assert not baresip.saw("REGISTER_OK") and "Authorization:" not in baresip.log_text()
