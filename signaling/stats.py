"""What the SIP stack counts: requests received and responses sent, for whoever reports on it (the gateway's
/metrics reads these at scrape time, so counting costs one dictionary update per message).

Methods a client invents are counted as "other": a label per made-up method would let anyone grow the series
without end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "MESSAGE", "UPDATE", "PRACK", "SUBSCRIBE",
     "NOTIFY", "PUBLISH", "REFER"}
)  # fmt: skip


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


@dataclass
class SipCounters:
    #: requests received (retransmissions absorbed by a transaction not counted), by method
    requests: Counter[str] = field(default_factory=Counter)
    #: responses sent, by (method, status class such as "2xx")
    responses: Counter[tuple[str, str]] = field(default_factory=Counter)

    def request_received(self, method: str) -> None:
        self.requests[method_label(method)] += 1

    def response_sent(self, method: str, status: int) -> None:
        self.responses[(method_label(method), f"{status // 100}xx")] += 1
