"""An authenticated new INVITE waiting for the application's decision (RFC 3261 section 13.3).

The stack hands an `IncomingCall` to the application's `InviteHandler.on_invite`. The application answers it
with an SDP answer (`answer`: 200 OK, then the dialog waits for the ACK) or refuses it (`reject`: a final
response with a `Reason: SIP;cause=...;text="..."` header). A CANCEL before either ends it with 487 and the
handler's `on_cancel`.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import TYPE_CHECKING, Any

from .dialog import Dialog, DialogError, DialogHandler
from .message import SipRequest, reason_phrase
from .transaction import InviteServerTransaction
from .transport import Flow

if TYPE_CHECKING:
    from .stack import SipAccount, SipStack

__all__ = ["CallCancelled", "CallState", "IncomingCall"]


class CallState(Enum):
    PENDING = "pending"
    ANSWERED = "answered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class CallCancelled(DialogError):
    """The caller cancelled (or the call was already answered or rejected)."""


def reason_header(status: int, text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'SIP;cause={status};text="{escaped}"'


class IncomingCall:
    """A new INVITE: `account` is who authenticated, `extension` the Request-URI user part (what was dialed),
    `offer` the SDP offer bytes (may be empty), `dialog` the dialog the answer will confirm."""

    def __init__(
        self,
        stack: SipStack,
        request: SipRequest,
        transaction: InviteServerTransaction,
        account: SipAccount,
        dialog: Dialog,
    ) -> None:
        self.stack = stack
        self.request = request
        self.transaction = transaction
        self.account = account
        self.dialog = dialog
        self.state = CallState.PENDING
        self.cancelled = asyncio.Event()
        self.context: Any = None  # free for the application

    @property
    def extension(self) -> str:
        try:
            return self.request.request_uri.user or ""
        except ValueError:
            return ""

    @property
    def offer(self) -> bytes:
        return self.request.body

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def flow(self) -> Flow:
        return self.transaction.flow

    @property
    def caller(self) -> str:
        """The From display name, or its user part."""
        f = self.request.from_
        return f.display_name or f.uri.user or ""

    def _check_pending(self) -> None:
        if self.state is CallState.CANCELLED:
            raise CallCancelled("the caller cancelled")
        if self.state is not CallState.PENDING:
            raise CallCancelled(f"the call was already {self.state.value}")

    def ring(self) -> None:
        """Send 180 Ringing."""
        self._check_pending()
        self.transaction.respond(self.request.create_response(180, to_tag=self.dialog.local_tag))

    def answer(
        self,
        sdp: bytes,
        handler: DialogHandler | None = None,
        content_type: str = "application/sdp",
        headers: list[tuple[str, str]] | None = None,
    ) -> Dialog:
        """Send 200 OK with the answer. The dialog is confirmed (handler.on_confirmed) when the ACK comes."""
        self._check_pending()
        self.state = CallState.ANSWERED
        dialog = self.dialog
        if handler is not None:
            dialog.handler = handler
        response = self.request.create_response(
            200,
            to_tag=dialog.local_tag,
            headers=[
                ("Contact", self.stack.contact_for(self.flow)),
                ("Content-Type", content_type),
                *self.stack.capability_headers(),
                *(headers or ()),
            ],
            body=sdp,
        )
        self.stack._call_done(self)
        self.stack._add_dialog(dialog)
        self.transaction.on_ack = dialog.receive_ack
        self.transaction.respond(response)
        dialog._start_2xx(self.request.cseq.seq, response.serialize(), initial=True)
        return dialog

    def reject(self, status: int, text: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        """Refuse with a final response (>= 300) carrying `Reason: SIP;cause=<status>;text="<text>"`."""
        if status < 300 or status > 699:
            raise ValueError("a rejection is a 3xx-6xx status")
        self._check_pending()
        self.state = CallState.REJECTED
        extra = [("Reason", reason_header(status, text or reason_phrase(status))), *(headers or ())]
        self.stack._call_done(self)
        self.transaction.respond(self.request.create_response(status, to_tag=self.dialog.local_tag, headers=extra))
        self.dialog._terminate("rejected")

    def _cancel(self) -> None:
        if self.state is CallState.PENDING:
            self.state = CallState.CANCELLED
            self.cancelled.set()
            self.dialog._terminate("cancelled")

    def __repr__(self) -> str:
        return f"<IncomingCall {self.extension!r} {self.call_id} {self.state.value}>"
