"""Meetings over HTTP: /meetings (tenant admins), /users/me/meetings (owners), /guests/me/meetings (no token)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.auth.context import acting_tenant, authenticate, tenants_in_scope
from gateway.auth.tokens import Caller
from gateway.confd.meetings.schema import MeetingCreate, MeetingUpdate
from gateway.confd.meetings.service import ORDERABLE, MeetingRecord
from gateway.http.errors import NotFound, json_response
from gateway.http.links import link
from gateway.http.lists import parse_list_params
from gateway.http.validation import body, path_uuid
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/confd/1.1"


def meeting_json(request: web.Request, meeting: MeetingRecord, with_credentials: bool) -> dict[str, Any]:
    data = request.app[SERVICES].meetings.to_json(meeting, with_credentials)
    data["links"] = link(request, "meetings", f"{PREFIX}/meetings/{meeting.uuid}")
    return data


def created(request: web.Request, meeting: MeetingRecord) -> web.Response:
    data = meeting_json(request, meeting, with_credentials=True)
    return json_response(data, status=201, headers={"Location": data["links"][0]["href"]})


# --- tenant admins


@routes.get(f"{PREFIX}/meetings")
async def list_meetings(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.meetings.read")
    params = parse_list_params(request.query, ORDERABLE)
    tenants = tenants_in_scope(request, acting_tenant(request, caller), params.recurse)
    total, meetings = await request.app[SERVICES].meetings.search(tenants, params)
    return json_response({"total": total, "items": [meeting_json(request, m, True) for m in meetings]})


@routes.post(f"{PREFIX}/meetings")
async def create_meeting(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.meetings.create")
    form = await body(request, MeetingCreate, "meetings")
    meeting = await request.app[SERVICES].meetings.create(acting_tenant(request, caller), **form.model_dump())
    return created(request, meeting)


async def _admin_meeting(request: web.Request, action: str) -> MeetingRecord:
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    caller = await authenticate(request, f"confd.meetings.{meeting_uuid}.{action}")
    tenants = tenants_in_scope(request, acting_tenant(request, caller), recurse=True)
    return await request.app[SERVICES].meetings.get(meeting_uuid, tenants)


@routes.get(PREFIX + "/meetings/{meeting_uuid}")
async def get_meeting(request: web.Request) -> web.Response:
    return json_response(meeting_json(request, await _admin_meeting(request, "read"), with_credentials=True))


@routes.put(PREFIX + "/meetings/{meeting_uuid}")
async def update_meeting(request: web.Request) -> web.Response:
    meeting = await _admin_meeting(request, "update")
    form = await body(request, MeetingUpdate, "meetings")
    await request.app[SERVICES].meetings.update(meeting, form.model_dump(exclude_none=True))
    return web.Response(status=204)


@routes.delete(PREFIX + "/meetings/{meeting_uuid}")
async def delete_meeting(request: web.Request) -> web.Response:
    meeting = await _admin_meeting(request, "delete")
    await request.app[SERVICES].meetings.delete(meeting)
    return web.Response(status=204)


# --- users: their own meetings


@routes.get(f"{PREFIX}/users/me/meetings")
async def list_my_meetings(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.users.me.meetings.read")
    params = parse_list_params(request.query, ORDERABLE)
    meetings = request.app[SERVICES].meetings
    total, items = await meetings.search({caller.tenant_uuid}, params, owner=caller.user_uuid)
    return json_response({"total": total, "items": [meeting_json(request, m, True) for m in items]})


@routes.post(f"{PREFIX}/users/me/meetings")
async def create_my_meeting(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.users.me.meetings.create")
    form = await body(request, MeetingCreate, "meetings")
    owners = [caller.user_uuid, *form.owner_uuids]
    meeting = await request.app[SERVICES].meetings.create(
        caller.tenant_uuid, form.name, owners, form.persistent, form.require_authorization, caller.user_uuid
    )
    return created(request, meeting)


async def user_meeting(request: web.Request, required_acl: str, owner_only: bool) -> tuple[Caller, MeetingRecord]:
    """A meeting of the caller's tenant; with owner_only, one he owns. Anything else is a 404, as in Wazo."""
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    caller = await authenticate(request, required_acl.format(meeting_uuid=meeting_uuid))
    meeting = await request.app[SERVICES].meetings.get(meeting_uuid, {caller.tenant_uuid})
    if owner_only and caller.user_uuid not in meeting.owner_uuids:
        raise NotFound("meetings", uuid=str(meeting_uuid))
    return caller, meeting


@routes.get(PREFIX + "/users/me/meetings/{meeting_uuid}")
async def get_my_meeting(request: web.Request) -> web.Response:
    caller, meeting = await user_meeting(request, "confd.users.me.meetings.{meeting_uuid}.read", owner_only=False)
    # Any user of the tenant may read a meeting, but only its owners see the guests' credentials.
    return json_response(meeting_json(request, meeting, with_credentials=caller.user_uuid in meeting.owner_uuids))


@routes.put(PREFIX + "/users/me/meetings/{meeting_uuid}")
async def update_my_meeting(request: web.Request) -> web.Response:
    _, meeting = await user_meeting(request, "confd.users.me.meetings.{meeting_uuid}.update", owner_only=True)
    form = await body(request, MeetingUpdate, "meetings")
    await request.app[SERVICES].meetings.update(meeting, form.model_dump(exclude_none=True))
    return web.Response(status=204)


@routes.delete(PREFIX + "/users/me/meetings/{meeting_uuid}")
async def delete_my_meeting(request: web.Request) -> web.Response:
    _, meeting = await user_meeting(request, "confd.users.me.meetings.{meeting_uuid}.delete", owner_only=True)
    await request.app[SERVICES].meetings.delete(meeting)
    return web.Response(status=204)


# --- guests: no token; knowing the meeting's UUID is what lets them in


@routes.get(PREFIX + "/guests/me/meetings/{meeting_uuid}")
async def get_guest_meeting(request: web.Request) -> web.Response:
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    services = request.app[SERVICES]
    meeting = await services.meetings.find(meeting_uuid)
    if meeting is None:
        raise NotFound("meetings", uuid=str(meeting_uuid))
    return json_response(services.meetings.guest_json(meeting))
