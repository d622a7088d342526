"""Media worker processes for tests, on the real RabbitMQ at 127.0.0.1:5672: each test names its own exchange (so
its own queues), and the processes it starts are ended by PID, whatever happens. A test module that wants them
imports the fixtures (`exchange`, `workers`: two workers, `settings`: a server whose rooms go to them) by their
function names."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.app import CALL_CONTROL
from gateway.config import Settings
from gateway.media.remote import RemoteMedia
from tests.conftest import Api, make_settings
from tests.waiting import until

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
#: the checkout under test, for the processes the tests start (whichever checkout the environment installed)
SOURCE = str(Path(__file__).resolve().parents[2])


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def new_exchange() -> str:
    return f"meetings-media-test-{uuid.uuid4().hex[:10]}"


def remote_media_env(exchange: str) -> dict[str, str]:
    """Settings (environment overrides) of a server whose rooms go to the workers on `exchange`."""
    return {
        "MEETINGS_MEDIA__EXTERNAL_WORKERS": "true",
        "MEETINGS_MEDIA__WORKERS_EXCHANGE": exchange,
        "MEETINGS_BUS__URL": BROKER,
    }


def remote_media(api: Api) -> RemoteMedia:
    """The server's rooms, in media workers."""
    media = api.client.app[CALL_CONTROL].media
    assert isinstance(media, RemoteMedia)
    return media


#: a worker process takes a few seconds to import and connect, many more on a loaded machine (CI saw 15 s go by)
WORKERS_START_SECONDS = 45


async def workers_announced(media: RemoteMedia, count: int) -> None:
    """Until `count` workers have announced themselves to the server's media side."""
    await until(lambda: len(media.alive_workers()) == count, WORKERS_START_SECONDS, f"{count} workers to announce")


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (they close their rooms), SIGKILL to any still there after 10 s (a stopped one is woken first)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def media_workers(
    exchange: str, port_ranges: tuple[str, ...] = ("31000-31499", "31500-31999")
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`meetings media-worker` processes on `exchange`, one per RTP port range, on 127.0.0.1."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MEETINGS_")}
    environ["MEETINGS_MEDIA__HOST_ADDRESSES"] = "[127.0.0.1]"
    environ["PYTHONPATH"] = SOURCE
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index, ports in enumerate(port_ranges):
            command = [sys.executable, "-m", "gateway", "media-worker", "--config", os.devnull, "--broker", BROKER,
                       "--exchange", exchange, "--rtp-ports", ports, "--id", f"w{index + 1}"]  # fmt: skip
            processes.append(subprocess.Popen(command, env=environ, stdin=subprocess.DEVNULL))
        yield processes
    finally:
        end(processes)


@pytest.fixture(name="exchange")
def exchange_fixture() -> str:
    return new_exchange()


@pytest.fixture(name="workers")
def workers_fixture(exchange: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two `meetings media-worker` processes, each with its own RTP ports."""
    with media_workers(exchange) as processes:
        yield processes


@pytest.fixture(name="settings")
def settings_fixture(database_url: str, exchange: str) -> Settings:
    """A server whose rooms go to the media workers on `exchange`."""
    return make_settings(database_url, **remote_media_env(exchange))
