"""Guest join time: from opening the guest link (name pre-filled) to the first decoded remote video frame.

The server runs in its own process (`meetings serve`, SQLite in a temporary folder, 127.0.0.1 only); the owner
sits in the meeting in one headless chromium page, sending the fake camera; each run opens the guest link in a
fresh browser context, clicks Join as soon as it can, and reads (in the page) performance.now() at the first
inbound video frame decoded: the time since navigation started. Median of the runs, and the median timeline of the
join's steps (the apps' `join:` performance marks, the owner's keyframe, the first packet and frame): see README.md.

    .venv/bin/python -m bench.web              # 7 runs
    .venv/bin/python -m bench.web --runs 3 --json bench/results/web.json

Needs call control (SIP over WebSocket at /api/asterisk/ws): without it the bench says so and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

# The order the phases of a join are reported in: performance marks "join:<step>" set by the apps
# (web/shared/marks.js), plus what this bench reads itself from the page.
STEPS = (
    "app-start",  # the guest app's module runs (the HTML and the app's own modules are loaded)
    "meeting-fetched",  # meeting, status and web config read: the pre-join screen shows
    "media-ready",  # getUserMedia resolved
    "sip-loaded",  # sip.js (and shared/call.js) imported
    "join-submitted",  # the Join button is clicked (the form's submit)
    "join-clicked",  # the app starts joining (the camera and microphone are open)
    "status-checked",  # the room is not full (checked again at Join)
    "websocket-open",  # SIP over WebSocket connected
    "registered",  # REGISTER answered 200 (after a 401 challenge)
    "offer-created",
    "ice-gathered",
    "invite-sent",  # the offer is complete (ICE gathering done or capped): the INVITE leaves now
    "answer-applied",  # 200 OK's SDP answer set
    "answered",  # the call is established (200 OK, ACK sent)
    "ice-connected",
    "dtls-connected",
    "reinvite-received",  # the server's re-INVITE adding the video slots
    "reinvite-answer-ready",
    "reinvite-answered",
    "track-video",
    "owner-pli",  # the owner's browser has received a keyframe request (its outbound pliCount rose)
    "owner-keyframe",  # the owner's browser has encoded a keyframe since
    "first-video-packet",  # the remote video track unmutes: its first RTP packet
    "first-frame",  # getStats: framesDecoded > 0 on an inbound video
)

# In the owner's page, during a run: the owner's outbound video as the server asks it for keyframes. Returns the
# wall-clock times (ms since the epoch) of the first PLI received and the first keyframe encoded after it started.
OWNER_WATCH_JS = """
() => new Promise((resolve) => {
  window.__watching = true;
  const call = window.__meeting && window.__meeting.call;
  const pc = call && call.peerConnection;
  const events = {};
  let base = null;
  const poll = async () => {
    if (pc) {
      for (const report of (await pc.getStats()).values()) {
        if (report.type !== 'outbound-rtp' || report.kind !== 'video') continue;
        const now = { pli: report.pliCount || 0, keyframes: report.keyFramesEncoded || 0 };
        if (base === null) base = now;
        if (now.pli > base.pli && events['owner-pli'] === undefined) events['owner-pli'] = Date.now();
        const asked = events['owner-pli'] !== undefined;
        if (asked && now.keyframes > base.keyframes && events['owner-keyframe'] === undefined) {
          events['owner-keyframe'] = Date.now();
        }
      }
    }
    if (!window.__watching) return resolve(events);
    setTimeout(poll, 10);
  };
  poll();
})
"""

# Watches the call from the moment it exists until a video frame is decoded, then returns every step's time since
# navigation started (ms): the apps' "join:" marks and this watch's own two. The first video packet is the remote
# video track's unmute (Chrome fires it on the first RTP packet); getStats (framesDecoded) is polled every 5 ms only
# from then on, so the watching itself does not load the page while it joins.
TIMELINE_JS = """
() => new Promise((resolve) => {
  const started = performance.now();
  const own = {};
  const watched = new Set();
  const receiving = [];
  const finish = () => {
    const marks = {};
    for (const entry of performance.getEntriesByType('mark')) {
      const step = entry.name.slice(5);
      if (entry.name.startsWith('join:') && !(step in marks)) marks[step] = entry.startTime;
    }
    const nav = performance.getEntriesByType('navigation')[0];
    if (nav) marks['dom-content-loaded'] = nav.domContentLoadedEventEnd;
    const resources = performance.getEntriesByType('resource');
    resolve({ marks: { ...marks, ...own }, requests: resources.length, origin: performance.timeOrigin });
  };
  const poll = async () => {
    const call = (window.__meeting && window.__meeting.call) || window.__joining;
    const pc = call && call.peerConnection;
    if (pc) {
      for (const receiver of pc.getReceivers()) {
        const track = receiver.track;
        if (track.kind !== 'video' || watched.has(track)) continue;
        watched.add(track);
        const unmuted = () => {
          if (own['first-video-packet'] === undefined) own['first-video-packet'] = performance.now();
          receiving.push(receiver);
        };
        if (!track.muted) unmuted();
        else track.addEventListener('unmute', unmuted, { once: true });
      }
      for (const receiver of receiving) {
        for (const report of (await receiver.getStats()).values()) {
          if (report.type === 'inbound-rtp' && report.kind === 'video' && report.framesDecoded > 0) {
            own['first-frame'] = performance.now();
            return finish();
          }
        }
      }
    }
    if (performance.now() - started > 30000) return finish();
    setTimeout(poll, receiving.length ? 5 : 20);
  };
  poll();
})
"""

ADMIN = ("admin", "bench-admin-password")
OWNER = ("owner", "bench-owner-password")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, token: str | None = None, basic: tuple[str, str] | None = None
) -> Any:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


class Server:
    """`meetings serve` in its own process, with a configuration of its own."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "config.yaml"
        sip_udp, sip_tcp = free_port(), free_port()
        self.config.write_text(
            f"http: {{host: 127.0.0.1, port: {self.port}, public_uri: '{self.url}'}}\n"
            f"sip: {{host: 127.0.0.1, udp_port: {sip_udp}, tcp_port: {sip_tcp}}}\n"
            "media: {host_addresses: [127.0.0.1]}\n"
            f"database: {{url: 'sqlite:///{folder}/meetings.db'}}\n"
            "logging: {level: WARNING}\n"
        )
        self.command = str(Path(sys.executable).parent / "meetings")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subprocess.run(
            [self.command, "bootstrap", "--config", str(self.config), "--username", ADMIN[0], "--password", ADMIN[1]],
            check=True,
            capture_output=True,
        )
        self.process = subprocess.Popen([self.command, "serve", "--config", str(self.config)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                http("GET", self.url + "/api/meetings-web/config.json")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise SystemExit("bench.web: the server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)


async def measure(server: Server, runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    admin = http("POST", server.url + "/api/auth/0.1/token", {}, basic=ADMIN)["data"]["token"]
    http(
        "POST",
        server.url + "/api/confd/1.1/users",
        {"username": OWNER[0], "password": OWNER[1], "firstname": "Owner"},
        admin,
    )
    owner_token = http("POST", server.url + "/api/auth/0.1/token", {}, basic=OWNER)["data"]["token"]
    meeting = http("POST", server.url + "/api/confd/1.1/users/me/meetings", {"name": "Bench"}, owner_token)
    link = f"{server.url}/guests/#meeting={meeting['uuid']}&server={server.url}&name=Bench%20guest"

    times: list[float] = []
    timelines: list[dict[str, float]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # The owner, in the meeting, sending the fake camera the guests will decode.
            owner_context = await browser.new_context(permissions=["camera", "microphone"])
            owner = await owner_context.new_page()
            await owner.goto(server.url + "/")
            await owner.fill("#username", OWNER[0])
            await owner.fill("#password", OWNER[1])
            await owner.click("#signin")
            await owner.goto(f"{server.url}/#/meetings/{meeting['uuid']}")
            await owner.click("#join")
            await owner.wait_for_selector("#meeting", timeout=20_000)

            for run in range(runs):
                context = await browser.new_context(permissions=["camera", "microphone"])
                guest = await context.new_page()
                await guest.goto(link, wait_until="commit")
                await guest.click("#join", timeout=20_000)
                watch = asyncio.ensure_future(owner.evaluate(OWNER_WATCH_JS))
                timeline = await guest.evaluate(TIMELINE_JS)
                await owner.evaluate("window.__watching = false")
                marks = timeline["marks"]
                for step, epoch_ms in (await watch).items():
                    marks[step] = epoch_ms - timeline["origin"]
                first_frame = marks.get("first-frame")
                if first_frame is None:
                    print(f"run {run + 1}: no remote video frame within 30 s", file=sys.stderr)
                else:
                    times.append(first_frame / 1000)
                    timelines.append(marks)
                    steps = " ".join(f"{step}={marks[step]:.0f}" for step in STEPS if step in marks)
                    print(
                        f"run {run + 1}: {first_frame / 1000:.3f} s ({timeline['requests']} requests) {steps}",
                        file=sys.stderr,
                    )
                await guest.evaluate("window.__meeting && window.__meeting.call.leave()")
                await context.close()
        finally:
            await browser.close()
    return {
        "metric": "guest link opened (name pre-filled) -> first decoded remote video frame, seconds",
        "runs": runs,
        "measured": len(times),
        "median_s": round(statistics.median(times), 3) if times else None,
        "min_s": round(min(times), 3) if times else None,
        "max_s": round(max(times), 3) if times else None,
        "all_s": [round(t, 3) for t in times],
        # From the click on Join (the prejoin screen's wait for the person taken out) to the first frame.
        "click_to_frame_median_s": median_since(timelines, "join-submitted"),
        # Median over the runs of each step's time since navigation started, in ms, in the order of a join.
        "timeline_ms": median_timeline(timelines),
        "machine": f"{os.cpu_count()} CPU, headless chromium, load average {os.getloadavg()[0]:.2f}",
    }


def median_since(timelines: list[dict[str, float]], step: str) -> float | None:
    spans = [marks["first-frame"] - marks[step] for marks in timelines if step in marks and "first-frame" in marks]
    return round(statistics.median(spans) / 1000, 3) if spans else None


def median_timeline(timelines: list[dict[str, float]]) -> dict[str, int]:
    result = {}
    for step in ("dom-content-loaded", *STEPS):
        values = [marks[step] for marks in timelines if step in marks]
        if values:
            result[step] = round(statistics.median(values))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        server = Server(Path(folder))
        server.start()
        try:
            config = http("GET", server.url + "/api/meetings-web/config.json")
            if not config.get("sip_websocket_available"):
                print("bench.web: the server has no SIP over WebSocket yet (/api/asterisk/ws): nothing to measure")
                raise SystemExit(2)
            result = asyncio.run(measure(server, args.runs))
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
