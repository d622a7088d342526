"""What the control role and media workers say to each other over RabbitMQ, as JSON.

One topic exchange per deployment (config `media.workers_exchange`). Workers publish their announcements on it
(routing key ``announce``: who, which queue, load, media counters, which rooms it holds for which control role;
``gone`` when stopping) and listen on it for ``discover`` (a control role starting asks everyone to announce at
once). Requests go to a worker's own queue through the default exchange, with `reply_to` (the control role's queue)
and a `correlation_id`; the worker answers there, and publishes its rooms' events to the same queue (the room's
owner), in order, on one channel: a reply never overtakes the events that came before it. Each event carries the
states of the room's participants at that moment (`participant_state`), so that the control role's copies read what
the worker has, and names the worker: once a room has moved away from a worker taken for dead, what that worker
still says of it is ignored (and the worker is told to close it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import aio_pika

from sfu.errors import ParticipantClosed, RoomClosed, RoomFull, SdpError, SfuError
from sfu.quality import MediaCounters
from sfu.settings import RoomOptions

from .interface import MediaUnavailable
from .local import LocalParticipant

ANNOUNCE = "announce"
DISCOVER = "discover"
#: how often workers announce themselves: often, so that a worker that died (SIGKILL: no goodbye) is noticed fast
ANNOUNCE_SECONDS = 0.5
#: a worker not heard of for this long (or for this many of its announcement intervals, if longer) is taken for
#: dead: its rooms move to another worker
WORKER_SILENCE_SECONDS = 2.0
ANNOUNCE_MISSED = 4
#: how often workers send their rooms' participant states (the bridge's RTP watch reads those states: keep it below
#: `asterisk.rtp_silence_seconds`)
TICK_SECONDS = 1.0


def worker_queue(exchange: str, worker_id: str) -> str:
    return f"{exchange}.worker.{worker_id}"


def control_queue(exchange: str, control_id: str) -> str:
    return f"{exchange}.control.{control_id}"


def message(body: dict[str, Any], **properties: Any) -> aio_pika.Message:
    return aio_pika.Message(
        json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        **properties,
    )


def options_to_json(options: RoomOptions) -> dict[str, Any]:
    return dataclasses.asdict(options)


def options_from_json(data: dict[str, Any]) -> RoomOptions:
    return RoomOptions(**{**data, "video_codecs": tuple(data.get("video_codecs", ("VP8", "H264")))})


def counters_to_json(counters: MediaCounters) -> dict[str, Any]:
    return dataclasses.asdict(counters)


def counters_from_json(data: dict[str, Any]) -> MediaCounters:
    known = {field.name for field in dataclasses.fields(MediaCounters)}
    return MediaCounters(**{name: value for name, value in data.items() if name in known})


def participant_state(participant: LocalParticipant, *, quality: bool = False, summary: bool = False) -> dict[str, Any]:
    """What the control role's copy of a participant reads, as the worker sees it now (`quality`: with his call
    quality now; `summary`: and over the whole call, as he leaves)."""
    last = participant.last_received_at
    state: dict[str, Any] = {
        "id": participant.id,
        "kind": participant.kind,
        "muted": participant.muted,
        "closed": participant.closed,
        "wants_offer": participant.wants_offer,
        "slots": [slot.to_json() for slot in participant.video_slots()],
        "received_ago": time.monotonic() - last if last is not None else None,
        "receives_audio": participant.receives_audio,
    }
    if quality or summary:
        state["quality"] = participant.quality.to_json()
    if summary:
        state["summary"] = participant.quality.summary()
        state["describe"] = participant.quality.describe()
    return state


def error_to_json(exc: Exception) -> dict[str, Any]:
    error: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, RoomFull):
        error.update(room=exc.room_id, max_participants=exc.max_participants)
    return error


def error_from_json(data: dict[str, Any]) -> SfuError:
    """The worker's error as the same sfu error class, so that call control answers as it would in-process."""
    name, text = data.get("error"), str(data.get("message", ""))
    if name == "RoomFull":
        return RoomFull(str(data.get("room", "")), int(data.get("max_participants", 0)))
    known: dict[str, type[SfuError]] = {
        "RoomClosed": RoomClosed,
        "SdpError": SdpError,
        "ParticipantClosed": ParticipantClosed,
        "MediaUnavailable": MediaUnavailable,
    }
    return known.get(str(name), SfuError)(text)
