"""Browser tests: Debian's chromium driven by Playwright (async API, on the server's own event loop).

Never a browser download: the system executable is launched with the flags known to work on a closed network.
Screenshots of each step go to test-artifacts/browser/<test>/ (gitignored): look at them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.webapps import has_sip_websocket
from tests.conftest import Api

CHROMIUM = os.environ.get("MEETINGS_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
# Console lines that are expected: an API answered 4xx on purpose (a wrong password, an unknown meeting), which
# the page explains; a 5xx or a script error is never expected.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")
#: Chromium cancels what it is loading when the machine's interfaces change, as they do whenever a test (this one
#: or one beside it) creates or removes a network namespace's veth pair: such a page load is tried again
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
NAVIGATION_ATTEMPTS = 3

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only: the database is not what they check."""
    return f"sqlite:///{tmp_path}/meetings.db"


@dataclass
class Browser:
    """One chromium for the test; each participant gets a context of its own (separate storage, devices)."""

    browser: Any
    folder: Path
    pages: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=lambda: [EXPECTED_CONSOLE])
    expected_page_errors: list[re.Pattern[str]] = field(default_factory=list)
    shots: int = 0

    def expect_console(self, pattern: str) -> None:
        """Console errors matching this are part of what the test does (e.g. it cut the network)."""
        self.expected.append(re.compile(pattern))

    def expect_page_error(self, pattern: str) -> None:
        """Uncaught errors matching this come from code the test runs but the project does not own (say why)."""
        self.expected_page_errors.append(re.compile(pattern))

    async def page(
        self, label: str, viewport: tuple[int, int] = (1280, 800), mobile: bool = False, trust_any_tls: bool = False
    ) -> Any:
        """`trust_any_tls`: the page reaches a server with a self-signed certificate (HTTPS and WSS)."""
        context = await self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            device_scale_factor=1,
            is_mobile=mobile,
            has_touch=mobile,
            permissions=["camera", "microphone", "clipboard-read", "clipboard-write"],
            ignore_https_errors=trust_any_tls,
        )
        page = await context.new_page()
        page.set_default_timeout(10_000)

        def on_page_error(error: Any) -> None:
            if not any(p.search(str(error)) for p in self.expected_page_errors):
                self.errors.append(f"[{label}] page error: {error}")

        page.on("pageerror", on_page_error)

        interrupted: list[str] = []

        def on_console(message: Any) -> None:
            if message.type != "error" or any(p.search(message.text) for p in self.expected):
                return
            if NETWORK_CHANGED in message.text:
                interrupted.append(message.text)
            else:
                self.errors.append(f"[{label}] console: {message.text}")

        page.on("console", on_console)
        navigate = page.goto

        async def goto(url: str, **options: Any) -> Any:
            for attempt in range(NAVIGATION_ATTEMPTS):
                interrupted.clear()
                try:
                    response = await navigate(url, **options)
                    await page.wait_for_load_state("load")
                except Exception as error:
                    if NETWORK_CHANGED not in str(error) or attempt == NAVIGATION_ATTEMPTS - 1:
                        raise
                    continue
                if not interrupted:
                    return response
            self.errors.extend(f"[{label}] console: {text}" for text in interrupted)
            return response

        page.goto = goto
        self.pages.append(page)
        return page

    async def shot(self, page: Any, name: str) -> Path:
        self.shots += 1
        path = self.folder / f"{self.shots:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=False)
        return path


def artifacts(request: pytest.FixtureRequest, part: str = "") -> Path:
    """The test's screenshot folder (emptied), or a part of it."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    if not part:
        shutil.rmtree(folder, ignore_errors=True)
    folder = folder / part if part else folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@asynccontextmanager
async def chromium(folder: Path, args: Sequence[str] = (), executable: str = CHROMIUM) -> AsyncIterator[Browser]:
    """One chromium (`executable`: a wrapper may start it elsewhere, e.g. in a network namespace); fails the test
    after it closes if a page logged an error it did not expect."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"no chromium at {CHROMIUM} (make system-test-deps installs Debian's)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=[*CHROMIUM_ARGS, *args]
        )
        handle = Browser(launched, folder)
        try:
            yield handle
        finally:
            await launched.close()
    assert not handle.errors, "errors in the pages:\n" + "\n".join(handle.errors)


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    async with chromium(artifacts(request)) as handle:
        yield handle


@dataclass
class Site:
    """The running server as the browser sees it."""

    api: Api
    url: str

    @property
    def has_sip_websocket(self) -> bool:
        """Whether call control has mounted SIP over WebSocket yet (the media tests wait for it)."""
        return has_sip_websocket(self.api.client.server.app)

    def guest_link(self, meeting_uuid: str, **extra: str) -> str:
        params = "&".join(f"{key}={value}" for key, value in {"meeting": meeting_uuid, **extra}.items())
        return f"{self.url}/guests/#{params}"


@pytest.fixture
async def site(api: Api) -> Site:
    url = str(api.client.make_url("")).rstrip("/")
    # The master tenant's HTTP ingress is this very server, so the guest links the app builds lead back here.
    ingresses = await api.call("GET", "/api/confd/1.1/ingresses/http", api.admin_token)
    if ingresses["items"]:
        path = f"/api/confd/1.1/ingresses/http/{ingresses['items'][0]['uuid']}"
        await api.call("PUT", path, api.admin_token, {"uri": url}, expect=204)
    else:
        await api.call("POST", "/api/confd/1.1/ingresses/http", api.admin_token, {"uri": url}, expect=201)
    return Site(api, url)


@pytest.fixture
def media_site(site: Site) -> Site:
    """The site, for tests that call: its call control must serve SIP over WebSocket (a failure, not a skip)."""
    assert site.has_sip_websocket, "the server has no /api/asterisk/ws route (SIP over WebSocket)"
    return site


async def sign_in(page: Any, site: Site, username: str, password: str) -> None:
    await page.goto(site.url + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin")
    await page.wait_for_selector("#create-form")
