"""The lobby over HTTP: guests create and poll their authorization; owners list, accept, reject, delete."""

from __future__ import annotations

from aiohttp import web

from gateway.confd.authorizations.schema import AuthorizationCreate
from gateway.confd.authorizations.service import ACCEPTED, REJECTED, Authorization
from gateway.confd.meetings.resource import user_meeting
from gateway.confd.meetings.service import MeetingRecord
from gateway.http.errors import NotFound, json_response
from gateway.http.validation import body, path_uuid
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/confd/1.1"
GUEST = PREFIX + "/guests/{guest_uuid}/meetings/{meeting_uuid}/authorizations"
OWNER = PREFIX + "/users/me/meetings/{meeting_uuid}/authorizations"
OWNER_ACL = "confd.users.me.meetings.{meeting_uuid}.authorizations"


async def _guest_meeting(request: web.Request) -> MeetingRecord:
    meeting_uuid = path_uuid(request, "meeting_uuid", "meetings")
    meeting = await request.app[SERVICES].meetings.find(meeting_uuid)
    if meeting is None:
        raise NotFound("meetings", uuid=str(meeting_uuid))
    return meeting


@routes.post(GUEST)
async def create_authorization(request: web.Request) -> web.Response:
    guest_uuid = path_uuid(request, "guest_uuid", "guests")
    meeting = await _guest_meeting(request)
    form = await body(request, AuthorizationCreate, "meeting_authorizations")
    authorization = await request.app[SERVICES].authorizations.create(meeting, guest_uuid, form.guest_name)
    return json_response(authorization.to_json(meeting), status=201)


@routes.get(GUEST + "/{authorization_uuid}")
async def poll_authorization(request: web.Request) -> web.Response:
    guest_uuid = path_uuid(request, "guest_uuid", "guests")
    meeting = await _guest_meeting(request)
    authorization_uuid = path_uuid(request, "authorization_uuid", "meeting_authorizations")
    authorization = await request.app[SERVICES].authorizations.get(meeting, authorization_uuid, guest_uuid)
    return json_response(authorization.to_json(meeting))


@routes.get(OWNER)
async def list_authorizations(request: web.Request) -> web.Response:
    _, meeting = await user_meeting(request, OWNER_ACL + ".read", owner_only=True)
    items = await request.app[SERVICES].authorizations.search(meeting)
    return json_response({"total": len(items), "items": [item.to_json(meeting) for item in items]})


async def _owned_authorization(request: web.Request, action: str) -> tuple[MeetingRecord, Authorization]:
    authorization_uuid = path_uuid(request, "authorization_uuid", "meeting_authorizations")
    _, meeting = await user_meeting(request, f"{OWNER_ACL}.{authorization_uuid}.{action}", owner_only=True)
    return meeting, await request.app[SERVICES].authorizations.get(meeting, authorization_uuid)


@routes.get(OWNER + "/{authorization_uuid}")
async def get_authorization(request: web.Request) -> web.Response:
    meeting, authorization = await _owned_authorization(request, "read")
    return json_response(authorization.to_json(meeting))


async def _decide(request: web.Request, status: str, action: str) -> web.Response:
    meeting, authorization = await _owned_authorization(request, action)
    decided = await request.app[SERVICES].authorizations.decide(meeting, authorization, status)
    return json_response(decided.to_json(meeting))


@routes.put(OWNER + "/{authorization_uuid}/accept")
async def accept_authorization(request: web.Request) -> web.Response:
    return await _decide(request, ACCEPTED, "accept.update")


@routes.put(OWNER + "/{authorization_uuid}/reject")
async def reject_authorization(request: web.Request) -> web.Response:
    return await _decide(request, REJECTED, "reject.update")


@routes.delete(OWNER + "/{authorization_uuid}")
async def delete_authorization(request: web.Request) -> web.Response:
    meeting, authorization = await _owned_authorization(request, "delete")
    await request.app[SERVICES].authorizations.delete(meeting, authorization)
    return web.Response(status=204)
