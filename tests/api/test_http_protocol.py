"""HTTP the framework refuses before any handler runs: a request it cannot parse is a 400 and one log line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import Api

UNPARSABLE = {
    "NUL in a header value": b"GET /api/confd/1.1/users/me HTTP/1.1\r\nHost: x\r\nX-Auth-Token: se\x00cret\r\n\r\n",
    "NUL in a header name": b"GET / HTTP/1.1\r\nHost: x\r\nX-A\x00b: 1\r\n\r\n",
    "header line too long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "garbage request line": b"\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The parser runs before any database is touched: SQLite is enough."""
    return f"sqlite:///{tmp_path}/meetings.db"


async def _raw_exchange(api: Api, request: bytes) -> bytes:
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # aiohttp closes the connection after such a 400
    finally:
        writer.close()


@pytest.mark.parametrize("request_bytes", UNPARSABLE.values(), ids=UNPARSABLE.keys())
async def test_unparsable_request_is_400_and_one_log_line(
    api: Api, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    answer = await _raw_exchange(api, request_bytes)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0], answer[:80]
    records = [record for record in caplog.records if record.name == "aiohttp.server"]
    assert "Traceback" not in caplog.text
    assert all(record.exc_info is None for record in records)
    lines = [record.getMessage() for record in records if record.levelno >= logging.INFO]
    assert len(lines) <= 1, lines
    if lines:  # a bad request line on a connection's first request is aiohttp's own debug line
        assert lines[0].startswith("bad HTTP request from 127.0.0.1: 400 "), lines
        assert "\n" not in lines[0] and "cret" not in lines[0] and "aaaa" not in lines[0]
    # The server goes on serving.
    await api.call("GET", "/api/confd/1.1/users/me", api.admin_token)
