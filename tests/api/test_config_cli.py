"""Settings validation and the `meetings` command, run as operators run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings
from tests.certificates import self_signed

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_with_documented_defaults() -> None:
    settings = load_settings(ROOT / "config.yaml", {})
    assert settings.http.port == 8080
    assert settings.sip.udp_port == settings.sip.tcp_port == 5060
    assert settings.meetings.max_participants == 100
    assert settings.meetings.expiry_seconds == 172800
    assert settings.meetings.exten_prefix == "*41"
    assert settings.database.url.startswith("sqlite:///var/")
    assert settings.asterisk.extension_pattern == "wazo-meeting-{uuid}"
    assert settings.sip.digest_algorithms == ["MD5"]
    assert settings.turn.urls == [] and settings.turn.credential_ttl_seconds == 86400


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MEETINGS_HTTP__PROT": "1"}, "http.prot"),
        ({"MEETINGS_HTTP__PORT": "eighty"}, "http.port"),
        ({"MEETINGS_MEDIA__HOST_ADDRESSES": "[not-an-ip]"}, "media.host_addresses"),
        ({"MEETINGS_HTTP__CORS_ORIGINS": "['*', 'https://a.example']"}, "http.cors_origins"),
        ({"MEETINGS_ASTERISK__TRANSPORT": "sctp"}, "asterisk.transport"),
        ({"MEETINGS_MEDIA__RTP_PORT_MIN": "30000", "MEETINGS_MEDIA__RTP_PORT_MAX": "20000"}, "media"),
        ({"MEETINGS_NOPE__X": "1"}, "nope"),
        ({"MEETINGS_AUTH__DEFAULT_TOKEN_EXPIRATION": "50000"}, "auth"),
        ({"MEETINGS_MEETINGS__EXPIRY_SECONDS": "99999999999999"}, "meetings.expiry_seconds"),
        ({"MEETINGS_SIP__DIGEST_ALGORITHMS": "[SHA-512, MD5]"}, "sip.digest_algorithms"),
        ({"MEETINGS_SIP__DIGEST_ALGORITHMS": "[MD5, SHA-256]"}, "sip.digest_algorithms"),
        ({"MEETINGS_SIP__DIGEST_ALGORITHMS": "[MD5, md5]"}, "sip.digest_algorithms"),
        ({"MEETINGS_SIP__DIGEST_ALGORITHMS": "[]"}, "sip.digest_algorithms"),
        ({"MEETINGS_TURN__URLS": "['turn:turn.example.com:3478']"}, "turn"),
        ({"MEETINGS_TURN__URLS": "['stun:turn.example.com']", "MEETINGS_TURN__SHARED_SECRET": "x" * 16}, "turn.urls"),
        ({"MEETINGS_TURN__SHARED_SECRET": "short"}, "turn.shared_secret"),
        ({"MEETINGS_TURN__CREDENTIAL_TTL_SECONDS": "5"}, "turn.credential_ttl_seconds"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(ROOT / "config.yaml", environ)


def test_environment_overrides_file() -> None:
    settings = load_settings(ROOT / "config.yaml", {"MEETINGS_HTTP__PORT": "9000", "MEETINGS_MEETINGS__LAST_N": "2"})
    assert settings.http.port == 9000 and settings.meetings.last_n == 2


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's code, whichever checkout the environment has installed
    environ = {**os.environ, "MEETINGS_DATABASE__URL": f"sqlite:///{tmp_path}/cli.db", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )


def test_cli_bootstrap_is_idempotent_and_operators_commands(tmp_path: Path) -> None:
    first = run(tmp_path, "bootstrap", "--username", "root", "--password", "root-password")
    assert first.returncode == 0, first.stderr
    assert "created the master tenant" in first.stdout and "created the admin user root" in first.stdout
    second = run(tmp_path, "bootstrap", "--username", "root", "--password", "root-password")
    assert second.returncode == 0 and "nothing to do" in second.stdout
    tenant = run(tmp_path, "tenant", "create", "acme")
    assert "created tenant acme" in tenant.stdout
    user = run(tmp_path, "user", "create", "--tenant", "acme", "--username", "wile", "--password", "coyote-pass")
    assert user.returncode == 0 and "created user wile" in user.stdout
    missing = run(tmp_path, "user", "create", "--tenant", "nowhere", "--username", "x", "--password", "y")
    assert missing.returncode != 0 and "no tenant named nowhere" in missing.stderr


def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("http:\n  port: many\n")
    result = run(tmp_path, "serve", "--config", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2 and "http.port" in result.stderr
    result = run(tmp_path, "serve", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "missing.yaml" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_until_ready(
    tmp_path: Path, port: int, extra_environ: dict[str, str] | None = None, **settings: str
) -> tuple[subprocess.Popen[str], list[str]]:
    import time
    import urllib.request

    environ = {
        **os.environ,
        "MEETINGS_DATABASE__URL": f"sqlite:///{tmp_path}/serve.db",
        "MEETINGS_HTTP__HOST": "127.0.0.1",
        "MEETINGS_HTTP__PORT": str(port),
        "MEETINGS_SIP__HOST": "127.0.0.1",
        "MEETINGS_SIP__UDP_PORT": "0",
        "MEETINGS_SIP__TCP_PORT": "0",
        **(extra_environ or {}),
        **{f"MEETINGS_{key.upper()}": value for key, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/confd/1.1/guests/me/meetings/x", timeout=1)
        except urllib.error.HTTPError:
            return process, []
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not start")


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=20)
    return output


def test_first_serve_prints_generated_admin_password_once(tmp_path: Path) -> None:
    import base64
    import json
    import urllib.request

    port = _free_port()
    process, _ = _serve_until_ready(tmp_path, port)
    output = _stop(process)
    password = next(line.split("password:")[1].split()[0] for line in output.splitlines() if "password:" in line)
    assert len(password) >= 12
    # where guest links lead, and that nobody else can reach a loopback address
    assert f"Guest links start with http://127.0.0.1:{port}" in output
    assert "warning: " in output and "set http.public_uri" in output

    # http.public_uri set later wins over what the first start stored
    process, _ = _serve_until_ready(tmp_path, port, HTTP__PUBLIC_URI="https://meet.example.com")
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/auth/0.1/token",
            data=b"{}",
            method="POST",
            headers={
                "Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode(),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["data"]["token"]
    finally:
        second_output = _stop(process)
    assert "password:" not in second_output
    assert "Guest links start with https://meet.example.com" in second_output
    assert "warning" not in second_output


async def test_https_and_wss_on_one_port(tmp_path: Path) -> None:
    import asyncio
    import ssl

    import aiohttp

    cert_file, key_file = self_signed(tmp_path)
    port = _free_port()
    environ = {
        **os.environ,
        "MEETINGS_DATABASE__URL": f"sqlite:///{tmp_path}/tls.db",
        "MEETINGS_HTTP__HOST": "127.0.0.1",
        "MEETINGS_HTTP__PORT": str(port),
        "MEETINGS_HTTP__TLS_CERT": str(cert_file),
        "MEETINGS_HTTP__TLS_KEY": str(key_file),
        "MEETINGS_SIP__HOST": "127.0.0.1",
        "MEETINGS_SIP__UDP_PORT": "0",
        "MEETINGS_SIP__TCP_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", cwd=tmp_path, env=environ,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert_file))
    context.check_hostname = False
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                try:
                    async with session.get(
                        f"https://127.0.0.1:{port}/api/confd/1.1/guests/me/meetings/x", ssl=context
                    ) as r:
                        assert r.status == 404
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("the HTTPS server did not start")
            async with session.ws_connect(
                f"wss://127.0.0.1:{port}/api/asterisk/ws", protocols=("sip",), ssl=context
            ) as ws:
                assert ws.protocol == "sip"
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MEETINGS_SIP__MAX_CONNECTIONS": "10", "MEETINGS_SIP__MAX_CONNECTIONS_PER_SOURCE": "11"}, "sip"),
        ({"MEETINGS_SIP__MESSAGE_TIMEOUT_SECONDS": "0"}, "sip.message_timeout_seconds"),
        ({"MEETINGS_SIP__IDLE_TIMEOUT_SECONDS": "5"}, "sip"),  # shorter than the message timeout
        ({"MEETINGS_AUTH__LOGIN_FAILURES_PER_SOURCE": "0"}, "auth.login_failures_per_source"),
        ({"MEETINGS_AUTH__LOGIN_FAILURE_WINDOW_SECONDS": "-1"}, "auth.login_failure_window_seconds"),
        ({"MEETINGS_AUTH__PASSWORD_HASH_THREADS": "0"}, "auth.password_hash_threads"),
        ({"MEETINGS_MEDIA__WORKERS": "-1"}, "media.workers"),
        # each worker needs its own slice of the RTP ports
        (
            {
                "MEETINGS_MEDIA__WORKERS": "4",
                "MEETINGS_MEDIA__RTP_PORT_MIN": "10000",
                "MEETINGS_MEDIA__RTP_PORT_MAX": "10050",
            },
            "media",
        ),
        ({"MEETINGS_MEDIA__WORKERS_EXCHANGE": ""}, "media.workers_exchange"),
    ],
)
def test_connection_and_login_limits_are_validated(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(ROOT / "config.yaml", environ)
    shipped = load_settings(ROOT / "config.yaml", {})
    assert shipped.sip.max_connections_per_source <= shipped.sip.max_connections
    assert shipped.sip.idle_timeout_seconds == 120 and shipped.sip.message_timeout_seconds == 10
    assert shipped.auth.login_failures_per_source == 20 and shipped.auth.login_failures_per_username == 10


async def test_unfinished_http_requests_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    """Slow-loris before the SIP WebSocket upgrade: headers that never end are cut at http.idle_timeout_seconds."""
    import asyncio
    import time

    port = _free_port()
    process, _ = await asyncio.to_thread(
        _serve_until_ready, tmp_path, port, {"MEETINGS_HTTP__IDLE_TIMEOUT_SECONDS": "1"}
    )
    try:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        started = time.monotonic()
        for _, writer in connections:
            writer.write(b"GET /api/asterisk/ws HTTP/1.1\r\nHost: meetings\r\nUpgrade: websocket\r\n")
        ends = await asyncio.gather(*(asyncio.wait_for(reader.read(), 20) for reader, _ in connections))
        print(f"50 unfinished HTTP requests closed after {time.monotonic() - started:.2f} s (timeout 1 s)")
        assert ends == [b""] * 50
        for _, writer in connections:
            writer.close()
    finally:
        await asyncio.to_thread(_stop, process)


def test_media_workers_get_disjoint_slices_of_the_rtp_ports() -> None:
    settings = load_settings(None, {"MEETINGS_MEDIA__WORKERS": "3"})
    assert not load_settings(ROOT / "config.yaml", {}).media.remote  # the embedded default: rooms in the process
    assert settings.media.remote
    slices = settings.media.worker_port_ranges()
    assert slices == [(10000, 13332), (13333, 16665), (16666, 20000)]


def test_cli_media_worker_options_are_validated(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--media-workers", "-2")
    assert result.returncode == 2 and "media.workers" in result.stderr
    result = run(tmp_path, "media-worker", "--rtp-ports", "many")
    assert result.returncode == 2 and "--rtp-ports" in result.stderr
    result = run(tmp_path, "media-worker", "--rtp-ports", "30010-30000")
    assert result.returncode == 2 and "rtp_port_min" in result.stderr
