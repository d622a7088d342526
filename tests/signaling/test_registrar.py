"""The registrar alone: ordering, expiry, refresh and wildcard, with a fake clock."""

from __future__ import annotations

import pytest

from signaling import registrar as registrar_module
from signaling.message import SipRequest, parse_message
from signaling.registrar import Registrar
from signaling.transport import Flow

from .raw import request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Flow(Flow):
    def send(self, data: bytes) -> bool:
        return True


def register(contacts: list[str], cseq: int, expires: int | None = None) -> SipRequest:
    extra = [f"Contact: {c}" for c in contacts] + ([f"Expires: {expires}"] if expires is not None else [])
    msg = parse_message(request("REGISTER", "sip:x", 5070, call_id="reg-1", cseq=cseq, extra=extra))
    assert isinstance(msg, SipRequest)
    return msg


def test_bindings_best_first_expire_refresh_and_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(registrar_module.time, "monotonic", clock)
    changes: list[str] = []
    r = Registrar()
    r.on_change = changes.append
    flow = _Flow(("127.0.0.1", 5060), ("127.0.0.1", 5070))
    res = r.register("alice", register(["<sip:a@h1>;q=0.5", "<sip:a@h2>;expires=60", "<sip:a@h3>;q=0.9"], 1, 120), flow)
    assert res.status == 200
    # q first (1.0 for h2, 0.9, 0.5), then the latest expiry
    assert [b.uri.host for b in res.bindings] == ["h2", "h3", "h1"]
    assert [b.expires_in() for b in res.bindings] == [60, 120, 120]
    clock.now += 61  # h2 expires
    assert [b.uri.host for b in r.lookup("alice")] == ["h3", "h1"]
    res = r.register("alice", register([], 2), flow)  # a query: no change
    assert res.status == 200 and [b.uri.host for b in res.bindings] == ["h3", "h1"]
    res = r.register("alice", register(["<sip:a@h1>;q=1"], 3, 300), flow)  # refresh with a new q
    assert [(b.uri.host, b.expires_in()) for b in res.bindings] == [("h1", 300), ("h3", 59)]
    assert r.register("alice", register(["<sip:a@h1>"], 3, 300), flow).status == 500  # same Call-ID, old CSeq
    assert r.register("alice", register(["*"], 4), flow).status == 400  # wildcard needs Expires: 0
    res = r.register("alice", register(["*"], 5, 0), flow)
    assert res.status == 200 and res.bindings == [] and r.lookup("alice") == [] and r.aors() == []
    assert changes.count("alice") == 3


def test_the_bindings_are_listed_with_the_parameters_they_were_registered_with() -> None:
    r = Registrar()
    flow = _Flow(("127.0.0.1", 5060), ("127.0.0.1", 5070))
    contact = '<sip:a@h1;transport=udp>;+sip.instance="<urn:uuid:da7960ce-cd3e-0001>";reg-id=1;expires=300'
    res = r.register("alice", register([contact], 1), flow)
    assert [b.contact_header() for b in res.bindings] == [
        '<sip:a@h1;transport=udp>;+sip.instance="<urn:uuid:da7960ce-cd3e-0001>";reg-id=1;expires=300'
    ]
