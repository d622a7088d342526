"""/api/calld/1.0: meeting participants (admins and owners), kicks, and the guests' room status."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.auth.context import acting_tenant, authenticate, tenants_in_scope
from gateway.confd.meetings.resource import user_meeting
from gateway.confd.meetings.service import MeetingRecord
from gateway.http.errors import NotFound, json_response
from gateway.http.validation import path_uuid
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/calld/1.0"
PARTICIPANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _participants_response(request: web.Request, meeting: MeetingRecord) -> web.Response:
    items = [p.to_json_with_quality() for p in request.app[SERVICES].conferences.participants(meeting.uuid)]
    return json_response({"items": items, "total": len(items)})


async def _admin_meeting(request: web.Request, acl: str) -> MeetingRecord:
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    caller = await authenticate(request, acl.format(meeting_uuid=meeting_uuid))
    tenants = tenants_in_scope(request, acting_tenant(request, caller), recurse=True)
    return await request.app[SERVICES].meetings.get(meeting_uuid, tenants)


def _participant_id(request: web.Request) -> str:
    participant_id = request.match_info["participant_id"]
    if not PARTICIPANT_ID.fullmatch(participant_id):
        raise NotFound("participants", id=participant_id)
    return participant_id


async def _kick(request: web.Request, meeting: MeetingRecord) -> web.Response:
    participant_id = _participant_id(request)
    if not await request.app[SERVICES].conferences.kick(meeting.uuid, participant_id):
        raise NotFound("participants", id=participant_id)
    return web.Response(status=204)


@routes.get(PREFIX + "/meetings/{meeting_uuid}/participants")
async def list_participants(request: web.Request) -> web.Response:
    meeting = await _admin_meeting(request, "calld.meetings.{meeting_uuid}.participants.read")
    return _participants_response(request, meeting)


@routes.delete(PREFIX + "/meetings/{meeting_uuid}/participants/{participant_id}")
async def kick_participant(request: web.Request) -> web.Response:
    acl = "calld.meetings.{meeting_uuid}.participants." + _participant_id(request) + ".delete"
    return await _kick(request, await _admin_meeting(request, acl))


@routes.get(PREFIX + "/users/me/meetings/{meeting_uuid}/participants")
async def list_my_participants(request: web.Request) -> web.Response:
    caller, meeting = await user_meeting(
        request, "calld.users.me.meetings.{meeting_uuid}.participants.read", owner_only=False
    )
    # Owners, and users who are in the room themselves, may see who else is there.
    present = any(p.user_uuid == caller.user_uuid for p in request.app[SERVICES].conferences.participants(meeting.uuid))
    if caller.user_uuid not in meeting.owner_uuids and not present:
        raise NotFound("meetings", uuid=str(meeting.uuid))
    return _participants_response(request, meeting)


@routes.delete(PREFIX + "/users/me/meetings/{meeting_uuid}/participants/{participant_id}")
async def kick_my_participant(request: web.Request) -> web.Response:
    acl = "calld.users.me.meetings.{meeting_uuid}.participants." + _participant_id(request) + ".delete"
    _, meeting = await user_meeting(request, acl, owner_only=True)
    return await _kick(request, meeting)


def _mute(request: web.Request, meeting: MeetingRecord, muted: bool) -> web.Response:
    participant_id = _participant_id(request)
    if not request.app[SERVICES].conferences.mute(meeting.uuid, participant_id, muted):
        raise NotFound("participants", id=participant_id)
    return web.Response(status=204)


# Beyond Wazo's meetings API (its conferences API has the same verbs): the organiser mutes someone for everyone.


async def _admin_mute(request: web.Request, verb: str) -> web.Response:
    acl = "calld.meetings.{meeting_uuid}.participants." + _participant_id(request) + "." + verb
    return _mute(request, await _admin_meeting(request, acl), verb == "mute")


async def _owner_mute(request: web.Request, verb: str) -> web.Response:
    acl = "calld.users.me.meetings.{meeting_uuid}.participants." + _participant_id(request) + "." + verb
    _, meeting = await user_meeting(request, acl, owner_only=True)
    return _mute(request, meeting, verb == "mute")


@routes.put(PREFIX + "/meetings/{meeting_uuid}/participants/{participant_id}/mute")
async def mute_participant(request: web.Request) -> web.Response:
    return await _admin_mute(request, "mute")


@routes.put(PREFIX + "/meetings/{meeting_uuid}/participants/{participant_id}/unmute")
async def unmute_participant(request: web.Request) -> web.Response:
    return await _admin_mute(request, "unmute")


@routes.put(PREFIX + "/users/me/meetings/{meeting_uuid}/participants/{participant_id}/mute")
async def mute_my_participant(request: web.Request) -> web.Response:
    return await _owner_mute(request, "mute")


@routes.put(PREFIX + "/users/me/meetings/{meeting_uuid}/participants/{participant_id}/unmute")
async def unmute_my_participant(request: web.Request) -> web.Response:
    return await _owner_mute(request, "unmute")


@routes.get(PREFIX + "/guests/me/meetings/{meeting_uuid}/status")
async def meeting_status(request: web.Request) -> web.Response:
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    services = request.app[SERVICES]
    meeting = await services.meetings.find(meeting_uuid)
    if meeting is None:
        raise NotFound("meetings", uuid=str(meeting_uuid))
    return json_response({"full": services.is_full(meeting.uuid)})
