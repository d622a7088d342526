"""Serving until told to stop, then draining: an upgrade or a restart without cutting meetings short.

The first SIGTERM (or SIGINT) starts the drain: readiness turns false (a load balancer sends new work elsewhere),
new calls are refused with 503 and a Reason, the HTTP APIs keep answering, and the meetings in progress go on until
their last participant leaves or `drain.timeout_seconds` pass; then whoever is left is hung up with a Reason and the
process exits. A second signal ends the drain at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time

from aiohttp import web

from gateway.app import CALL_CONTROL, HEALTH, create_app
from gateway.config import Settings
from gateway.services import SERVICES

logger = logging.getLogger(__name__)

#: how often the drain looks whether the meetings have emptied
DRAIN_POLL = 0.5
#: seconds for open HTTP connections (WebSockets included) to finish once the calls have ended
HTTP_SHUTDOWN_SECONDS = 5.0


async def serve_until_drained(settings: Settings, ssl_context: ssl.SSLContext | None) -> None:
    app = create_app(settings, auto_bootstrap=True)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=HTTP_SHUTDOWN_SECONDS,
        # aiohttp's keep-alive timer also runs from the connection's start: it bounds an unfinished request too
        keepalive_timeout=settings.http.idle_timeout_seconds,
    )
    await runner.setup()
    await web.TCPSite(runner, settings.http.host, settings.http.port, ssl_context=ssl_context).start()
    signalled = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if signalled.is_set():
            hurry.set()
        signalled.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    try:
        await signalled.wait()
        await drain(app, settings.drain.timeout_seconds, hurry)
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
        await runner.cleanup()


async def drain(app: web.Application, limit: float, hurry: asyncio.Event) -> None:
    """Refuse new calls, let the calls in progress go on up to `limit` seconds (or until `hurry`), then hang them up."""
    services, control, health = app[SERVICES], app[CALL_CONTROL], app[HEALTH]
    control.draining = health.draining = True
    services.metrics.draining.set(1)
    rooms, kinds = services.conferences.census()
    logger.info(
        "draining: new calls are refused; %d participants in %d meetings may go on for up to %.0f s "
        "(signal again to stop now)",
        sum(kinds.values()),
        rooms,
        limit,
    )
    deadline = time.monotonic() + limit
    while services.conferences.census()[0] and time.monotonic() < deadline and not hurry.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), DRAIN_POLL)
    rooms, kinds = services.conferences.census()
    if rooms:
        why = "told to stop now" if hurry.is_set() else f"{limit:.0f} s passed"
        logger.info("drain over (%s): hanging up %d participants", why, sum(kinds.values()))
        await control.hang_up_everyone("server restarting")
    else:
        logger.info("drained: no meeting in progress")
