"""sip.js as served to the pages: the bundle built at set-up at a URL carrying its digest (kept for good), the pages'
import map pointing at that URL, and the fallback module when no bundle was built."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import webapps


@pytest.fixture
async def client() -> TestClient:
    app = web.Application(middlewares=[webapps.vendor_cache])
    webapps.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


def build(path: Path, text: str) -> None:
    path.write_text(text)


def built(path: Path) -> bool:
    return path.exists()


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sip-bundle.js"
    monkeypatch.setattr(webapps, "SIPJS_BUNDLE", path)
    return path


async def test_the_bundle_is_served_at_its_digest_for_good(client: TestClient, bundle: Path) -> None:
    build(bundle, "export const UserAgent = 1;\n")
    page = await (await client.get("/guests/")).text()
    url = webapps.sipjs_url()
    assert "?v=" in url and f'"sip.js": "{url}"' in page and f'href="{url}"' in page
    response = await client.get(url)
    assert response.status == 200 and "immutable" in response.headers["Cache-Control"]
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert await response.text() == "export const UserAgent = 1;\n"
    # asked for without (or with an old) digest: revalidated
    assert (await client.get(webapps.SIPJS_BUNDLE_URL + "?v=old")).headers["Cache-Control"] == "no-cache"
    # a new build, a new URL in the pages
    build(bundle, "export const UserAgent = 2;\n// longer\n")
    assert webapps.sipjs_url() != url and webapps.sipjs_url() in await (await client.get("/")).text()


async def test_without_a_bundle_the_fallback_reexports_sip_js_modules(client: TestClient, bundle: Path) -> None:
    assert not built(bundle)
    assert webapps.sipjs_url() == webapps.SIPJS_BUNDLE_URL
    response = await client.get(webapps.SIPJS_BUNDLE_URL)
    assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    text = await response.text()
    assert 'from "/vendor/sip.js/api/index.js"' in text and "SessionDescriptionHandler" in text
    for name in ("Inviter", "Registerer", "RegistererState", "SessionState", "UserAgent", "SessionDescriptionHandler"):
        assert name in (webapps.WEB_ROOT / "sip-bundle.js").read_text()  # the bundle's entry exports the same
