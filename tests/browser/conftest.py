"""Browser tests: Debian's chromium driven by Playwright (async API, on the server's own event loop).

Never a browser download: the system executable is launched with the flags known to work on a closed network.
Screenshots of each step go to test-artifacts/browser/<test>/ (gitignored): look at them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
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
    shots: int = 0

    def expect_console(self, pattern: str) -> None:
        """Console errors matching this are part of what the test does (e.g. it cut the network)."""
        self.expected.append(re.compile(pattern))

    async def page(self, label: str, viewport: tuple[int, int] = (1280, 800), mobile: bool = False) -> Any:
        context = await self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            device_scale_factor=1,
            is_mobile=mobile,
            has_touch=mobile,
            permissions=["camera", "microphone", "clipboard-read", "clipboard-write"],
        )
        page = await context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: self.errors.append(f"[{label}] page error: {error}"))

        def on_console(message: Any) -> None:
            if message.type == "error" and not any(p.search(message.text) for p in self.expected):
                self.errors.append(f"[{label}] console: {message.text}")

        page.on("console", on_console)
        self.pages.append(page)
        return page

    async def shot(self, page: Any, name: str) -> Path:
        self.shots += 1
        path = self.folder / f"{self.shots:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"no chromium at {CHROMIUM} (make system-test-deps installs Debian's)")
    from playwright.async_api import async_playwright

    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        handle = Browser(chromium, folder)
        try:
            yield handle
        finally:
            await chromium.close()
    assert not handle.errors, "errors in the pages:\n" + "\n".join(handle.errors)


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


async def sign_in(page: Any, site: Site, username: str, password: str) -> None:
    await page.goto(site.url + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin")
    await page.wait_for_selector("#create-form")
