"""The access log names no guest link and no token (a meeting's UUID lets anyone join; a token is a login)."""

from __future__ import annotations

import logging

import pytest

from gateway.http.redaction import ACCESS_LOGGER
from tests.conftest import Api


@pytest.fixture(autouse=True)
def access_log_on(caplog: pytest.LogCaptureFixture) -> None:
    # before the client's first connection: aiohttp decides per connection whether it logs
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)


async def test_access_log_shortens_meeting_uuids_and_drops_tokens(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    _, alice = await api.create_user("alice", "alice-secret-1")
    meeting = await api.create_meeting(alice)
    uuid = meeting["uuid"]

    await api.call("GET", f"/api/confd/1.1/guests/me/meetings/{uuid}")
    await api.call("GET", f"/api/calld/1.0/guests/me/meetings/{uuid}/status")
    await api.request("HEAD", f"/api/auth/0.1/token/{alice}")
    await api.request("GET", f"/api/websocketd/?token={alice}&version=2")

    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    assert len(lines) >= 4, lines
    text = "\n".join(lines)
    assert uuid not in text
    assert alice not in text
    # what is left still tells an operator which meeting and which kind of request it was
    assert f"/guests/me/meetings/{uuid[:8]}-…/status" in text
    assert "/api/auth/0.1/token/[redacted]" in text
    assert "token=[redacted]&version=2" in text
    structured = [getattr(record, "first_request_line", "") for record in caplog.records]
    assert not any(uuid in line or alice in line for line in structured)
