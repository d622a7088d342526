"""SIP messages (RFC 3261 sections 7, 20 and 25): parsing and serialising requests and responses.

Headers are kept as text, grouped by their long lower-case name; lists are split and values parsed only when
asked for (`Headers.values`, `SipMessage.vias`, `SipMessage.cseq` ...), so a message that is only routed costs
little. Bodies are bytes, kept byte for byte. Header text is decoded as UTF-8 with `surrogateescape`, so any
byte sequence survives a parse/serialise round trip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .uri import Address, SipUri, SipUriError, format_params, parses_plainly, split_commas, split_params

__all__ = [
    "CSeq",
    "Headers",
    "ParserLimits",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "Via",
    "parse_message",
    "reason_phrase",
]

SIP_VERSION = "SIP/2.0"
BRANCH_COOKIE = "z9hG4bK"

# Compact forms (section 7.3.3 and later RFCs) -> long lower-case names.
COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# How we write header names (everything else: the spelling first seen, or Title-Case).
_DISPLAY = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_VIA = re.compile(
    r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[^\s;:\[]+)"
    r"(?:\s*:\s*(\d{1,5}))?\s*(;.*)?$",
    re.S,
)

_REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Size limits. A datagram is one message; a stream frames at most `max_head + max_body` bytes."""

    max_head: int = 32 * 1024
    max_body: int = 256 * 1024
    max_headers: int = 200


DEFAULT_LIMITS = ParserLimits()


class SipParseError(ValueError):
    """A message could not be parsed.

    `answerable` says whether enough was read to send `400 Bad Request` (request line plus Via, From, To,
    Call-ID and CSeq): then `request` holds that partial request and `status` the code to answer with.
    Otherwise the message is dropped (and logged).
    """

    def __init__(self, reason: str, request: SipRequest | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.status = status

    @property
    def answerable(self) -> bool:
        return self.request is not None


def canonical_name(name: str) -> str:
    low = name.lower()
    return COMPACT.get(low, low) if len(low) == 1 else low


class Headers:
    """Header fields by long lower-case name, each a tuple of raw values in arrival order.

    Tuples, not lists: a response shares the Via/From/To/Call-ID/CSeq values of its request without copying,
    and tuples of strings drop out of the garbage collector's sight (lists in the thousands of messages alive
    under load would be traversed by every collection).
    """

    __slots__ = ("_display", "_fields")

    def __init__(self) -> None:
        self._fields: dict[str, tuple[str, ...]] = {}
        self._display: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        key = canonical_name(name)
        lst = self._fields.get(key)
        if lst is None:
            self._fields[key] = (value,)
            if key not in _DISPLAY and key != name.lower():
                # compact form: display the long name
                self._display[key] = key.title()
            elif key not in self._display:
                self._display[key] = _DISPLAY.get(key) or (name if name != key else key.title())
        else:
            self._fields[key] = (*lst, value)

    def set(self, name: str, value: str) -> None:
        key = canonical_name(name)
        if key in self._fields:
            self._fields[key] = (value,)
        else:
            self.add(name, value)

    def prepend(self, name: str, value: str) -> None:
        key = canonical_name(name)
        lst = self._fields.get(key)
        if lst is None:
            self.add(name, value)
        else:
            self._fields[key] = (value, *lst)

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._fields.pop(key, None)
        self._display.pop(key, None)

    def get(self, name: str, default: str | None = None) -> str | None:
        lst = self._fields.get(name)  # internal callers pass canonical names
        if lst is None:
            lst = self._fields.get(canonical_name(name))
        return lst[0] if lst else default

    def get_all(self, name: str) -> list[str]:
        """Raw values as they came (one per header line), in a new list."""
        lst = self._fields.get(name)
        if lst is None:
            lst = self._fields.get(canonical_name(name), ())
        return list(lst)

    def values(self, name: str) -> list[str]:
        """Values with comma-separated lists split (Via, Route, Contact, Allow ...)."""
        lst = self._fields.get(name)
        if lst is None:
            lst = self._fields.get(canonical_name(name))
        if not lst:
            return []
        if len(lst) == 1 and "," not in lst[0]:
            return [lst[0].strip()]
        out: list[str] = []
        for v in lst:
            out.extend(split_commas(v))
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self._fields

    def items(self) -> Iterator[tuple[str, str]]:
        for key, lst in self._fields.items():
            display = self._display.get(key) or _DISPLAY.get(key) or key.title()
            for v in lst:
                yield display, v

    def copy(self) -> Headers:
        h = Headers()
        h._fields = dict(self._fields)  # the values are immutable tuples
        h._display = dict(self._display)
        return h

    def __len__(self) -> int:
        return sum(len(v) for v in self._fields.values())


class Via:
    """One Via header value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`."""

    __slots__ = ("host", "params", "port", "transport")

    def __init__(self, transport: str, host: str, port: int | None = None, params: dict[str, str | None] | None = None):
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = params if params is not None else {}

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA.match(text.strip())
        if not m:
            raise SipUriError(f"bad Via: {text[:80]!r}")
        port = int(m.group(3)) if m.group(3) else None
        if port is not None and port > 65535:
            raise SipUriError("Via port out of range")
        return cls(m.group(1), m.group(2).lower(), port, split_params(m.group(4) or ""))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        num, _, method = text.strip().partition(" ")
        method = method.strip(" \t")
        if not (num.isascii() and num.isdigit()) or len(num) > 10 or not method or not _TOKEN.match(method):
            raise SipUriError(f"bad CSeq: {text[:80]!r}")
        seq = int(num)
        if seq >= 2**31:
            raise SipUriError("CSeq out of range")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


class SipMessage:
    """What requests and responses share: headers, body and lazily parsed common headers."""

    __slots__ = ("_cseq", "_from", "_to", "_via", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._via: Via | None = None
        self._cseq: CSeq | None = None
        self._from: Address | None = None
        self._to: Address | None = None

    # -- common headers ---------------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return (self.headers.get("call-id") or "").strip()

    @property
    def cseq(self) -> CSeq:
        if self._cseq is None:
            self._cseq = CSeq.parse(self.headers.get("cseq") or "")
        return self._cseq

    @property
    def from_(self) -> Address:
        if self._from is None:
            self._from = Address.parse(self.headers.get("from") or "")
        return self._from

    @property
    def to(self) -> Address:
        if self._to is None:
            self._to = Address.parse(self.headers.get("to") or "")
        return self._to

    @property
    def from_tag(self) -> str | None:
        return self.from_.params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self.to.params.get("tag")

    @property
    def via(self) -> Via:
        """The top Via."""
        if self._via is None:
            first = self.headers.get("via") or ""
            if "," in first:
                elements = split_commas(first)
                first = elements[0] if elements else ""
            self._via = Via.parse(first)
        return self._via

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.values("via")]

    @property
    def content_type(self) -> str | None:
        ct = self.headers.get("content-type")
        return ct.split(";", 1)[0].strip().lower() if ct else None

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via (e.g. to add `received`/`rport`), keeping the others as they were."""
        fields = self.headers._fields
        lst = fields.get("via")
        if not lst:
            self.headers.add("Via", str(via))
        else:
            first = lst[0]
            if "," in first:
                fields["via"] = (str(via), *split_commas(first)[1:], *lst[1:])
            else:
                fields["via"] = (str(via), *lst[1:])
        self._via = via

    def invalidate(self) -> None:
        """Forget cached parsed headers after editing `headers` directly."""
        self._via = self._cseq = None
        self._from = self._to = None

    # -- serialising --------------------------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        parts = [self.start_line(), "\r\n"]
        for key, lst in self.headers._fields.items():
            if key == "content-length":
                continue
            display = self.headers._display.get(key) or _DISPLAY.get(key) or key.title()
            for v in lst:
                parts.append(display)
                parts.append(": ")
                parts.append(v)
                parts.append("\r\n")
        parts.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        head = "".join(parts).encode("utf-8", "surrogateescape")
        return head + self.body if self.body else head

    __bytes__ = serialize


class SipRequest(SipMessage):
    __slots__ = ("_uri", "method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self._uri: SipUri | None = None

    @property
    def request_uri(self) -> SipUri:
        if self._uri is None:
            self._uri = SipUri.parse(self.uri)
        return self._uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def create_response(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipResponse:
        """A response per section 8.2.6: Via, From, To (+tag), Call-ID, CSeq copied; Record-Route for dialogs."""
        h = Headers()
        src = self.headers._fields
        fields = h._fields
        for key in ("via", "from", "to", "call-id", "cseq"):
            lst = src.get(key)
            if lst:
                fields[key] = lst  # immutable: shared, not copied
        if to_tag is not None and status != 100:
            to = self.headers.get("to") or ""
            if ";tag=" not in to.replace(" ", "").lower():
                fields["to"] = (f"{to};tag={to_tag}",)
        if 100 < status < 300 and "record-route" in src:
            fields["record-route"] = src["record-route"]
        if status == 100 and "timestamp" in src:
            fields["timestamp"] = src["timestamp"]
        if headers:
            for name, value in headers:
                h.add(name, value)
        return SipResponse(status, reason or reason_phrase(status), h, body)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str = "", headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason or reason_phrase(status)

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


# -- parsing --------------------------------------------------------------------------------------------------
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
# raw header name as written -> (canonical key, spelling to write it with or None), for names already validated
_NAME_CACHE: dict[str, tuple[str, str | None]] = {}


def parse_message(
    data: bytes, limits: ParserLimits = DEFAULT_LIMITS, *, datagram: bool = True
) -> SipRequest | SipResponse:
    """Parse one whole message. `datagram`: a Content-Length shorter than the data truncates the body (UDP);
    for stream and WebSocket framing the body must be exactly Content-Length long (when present)."""
    # Leading CRLFs before the start line are ignored (section 7.5).
    start = 0
    n = len(data)
    while start < n and data[start] in (13, 10):
        start += 1
    sep = data.find(b"\r\n\r\n", start)
    if sep >= 0:
        head_end, body_start = sep, sep + 4
    else:
        sep = data.find(b"\n\n", start)
        if sep >= 0:
            head_end, body_start = sep, sep + 2
        else:
            head_end = body_start = n
    if head_end - start > limits.max_head:
        raise SipParseError("header section too large")
    if n - body_start > limits.max_body:
        raise SipParseError("body too large")
    head = data[start:head_end].decode("utf-8", "surrogateescape")
    if "\n" in head:
        lines = head.split("\r\n")
        if len(lines) - 1 != head.count("\n"):
            lines = head.replace("\r\n", "\n").split("\n")
    else:
        lines = [head]
    first = lines[0]
    if not first:
        raise SipParseError("empty message")
    msg: SipRequest | SipResponse
    problem: str | None = None
    status_for_problem = 400
    if first.startswith("SIP/"):
        parts = first.split(" ", 2)
        if (
            len(parts) < 2
            or parts[0] != SIP_VERSION
            or not (parts[1].isascii() and parts[1].isdigit())
            or len(parts[1]) != 3
        ):
            raise SipParseError(f"bad status line: {first[:80]!r}")
        status = int(parts[1])
        if status < 100 or status > 699:
            raise SipParseError(f"status out of range: {status}")
        msg = SipResponse(status, parts[2] if len(parts) > 2 else "")
    else:
        parts = first.split(" ")
        if len(parts) != 3:
            # Extra or embedded whitespace (RFC 4475 lwsstart, trws, lwsruri): still answerable with a 400 when
            # the method and the version can be told apart.
            parts = first.split()
            if len(parts) < 3:
                raise SipParseError(f"bad request line: {first[:80]!r}")
            if len(parts) > 3:
                parts = [parts[0], " ".join(parts[1:-1]), parts[-1]]
            problem = "bad Request-Line"
        method, uri, version = parts
        if not _TOKEN.match(method):
            raise SipParseError(f"bad method: {method[:40]!r}")
        msg = SipRequest(method, uri)
        if version != SIP_VERSION:
            if version.upper().startswith("SIP/"):
                problem, status_for_problem = "unsupported SIP version", 505
            else:
                problem = "bad SIP version"
        if ":" not in uri or uri.startswith("<"):
            problem = problem or "bad Request-URI"
    headers = msg.headers
    if len(lines) > limits.max_headers:
        raise SipParseError("too many header lines")
    fields = headers._fields
    last_key: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            # folded line (section 7.3.1): continues the previous value
            if last_key is None:
                problem = problem or "continuation line without a header"
                continue
            lst = fields[last_key]
            fields[last_key] = (*lst[:-1], lst[-1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        cached = _NAME_CACHE.get(name) if colon else None
        if cached is None:
            raw = name
            name = name.rstrip(" \t")
            if not colon or not _TOKEN.match(name):
                problem = problem or f"bad header line: {line[:60]!r}"
                last_key = None
                continue
            key = name.lower()
            if len(key) == 1:
                key = COMPACT.get(key, key)
                display = None  # compact form: written with its long name
            else:
                display = name if name != key else None
            if len(_NAME_CACHE) < 4096:
                _NAME_CACHE[raw] = (key, display)
        else:
            key, display = cached
        value = value.strip(" \t")
        lst2 = fields.get(key)
        if lst2 is None:
            fields[key] = (value,)
            if display is not None:
                headers._display[key] = display
        else:
            fields[key] = (*lst2, value)
        last_key = key

    # Body framing
    body = data[body_start:] if body_start < n else b""
    cl_values = fields.get("content-length")
    if cl_values:
        cl_text = cl_values[0]
        if not (cl_text.isascii() and cl_text.isdigit()) or len(cl_text) > 9 or len(cl_values) > 1:
            problem = problem or "bad Content-Length"
        else:
            cl = int(cl_text)
            if cl < len(body):
                if datagram:
                    body = body[:cl]
                else:
                    problem = problem or "body longer than Content-Length"
            elif cl > len(body):
                problem = problem or "body shorter than Content-Length"
    msg.body = body

    if isinstance(msg, SipResponse):
        if problem or any(k not in fields for k in _REQUIRED):
            raise SipParseError(problem or "response without a mandatory header")
        try:
            msg.via  # noqa: B018 - the top Via must parse for the response to be matched
            msg.cseq  # noqa: B018
            _check_from(msg, fields["from"][0])
            msg.to  # noqa: B018
        except ValueError as e:
            raise SipParseError(str(e)) from None
        return msg

    # Requests. No top Via to copy: no response can be matched by the sender, so the request is dropped.
    vias = fields.get("via")
    top_via = vias[0] if vias else ""
    if not top_via.startswith("SIP/2.0/"):  # the usual shape, checked at no cost
        if "," in top_via:
            elements = split_commas(top_via)
            top_via = elements[0] if elements else ""
        if not _SENT_PROTOCOL.match(top_via):
            raise SipParseError("no usable Via")
    # From here on a response can be sent: 400 (or 505) with a reason phrase naming what is wrong.
    if status_for_problem == 505:
        raise SipParseError(problem or "unsupported SIP version", msg, 505)
    _check_request_headers(msg, fields)
    if problem:
        raise SipParseError(problem, msg, status_for_problem)
    if msg.cseq.method != msg.method:
        raise SipParseError("CSeq method does not match the request method", msg)
    mf = fields.get("max-forwards")
    if mf and not (mf[0].isascii() and mf[0].isdigit() and len(mf[0]) <= 9 and int(mf[0]) <= 255):
        raise SipParseError("bad Max-Forwards", msg)
    return msg


# The start of a Via value (sent-protocol), enough to copy it into a response; the full parse is `Via.parse`.
_SENT_PROTOCOL = re.compile(r"SIP\s*/", re.IGNORECASE)
_DISPLAY_NAMES = {"from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq", "via": "Via"}
_REQUIRED_ORDER = ("from", "to", "call-id", "cseq", "via")


def _check_request_headers(msg: SipRequest, fields: dict[str, tuple[str, ...]]) -> None:
    """The headers a response copies (section 8.1.1): present, single where they must be, and well-formed.
    Any failure is a SipParseError that names the header and carries `msg`, so it is answered with a 400."""
    from_ = fields.get("from")
    to = fields.get("to")
    call_id = fields.get("call-id")
    cseq = fields.get("cseq")
    vias = fields["via"]  # present: checked by the caller
    if not (from_ and from_[0] and to and to[0] and call_id and call_id[0] and cseq and cseq[0]):
        missing = [_DISPLAY_NAMES[k] for k in _REQUIRED if not (fields.get(k) or ("",))[0]]
        raise SipParseError(f"missing {', '.join(missing)}", msg)
    if len(from_) > 1 or len(to) > 1 or len(call_id) > 1 or len(cseq) > 1:
        twice = next(k for k in _REQUIRED_ORDER if len(fields[k]) > 1)
        raise SipParseError(f"more than one {_DISPLAY_NAMES[twice]} header", msg)
    key = "via"
    try:
        msg.via  # noqa: B018
        if len(vias) > 1 or "," in vias[0]:
            msg.vias  # noqa: B018 - every Via must parse (RFC 4475 badinv01); the common single Via is parsed once
        key = "cseq"
        msg.cseq  # noqa: B018
        key = "from"
        _check_from(msg, from_[0])
        key = "to"
        msg.to  # noqa: B018
    except ValueError:
        raise SipParseError(f"bad {_DISPLAY_NAMES[key]} header", msg) from None


def _check_from(msg: SipMessage, value: str) -> None:
    """From must parse (raises SipUriError), but is parsed into an Address only when read (`msg.from_`):
    most requests (REGISTER, OPTIONS, retransmissions) never read it. A plain `<sip:...>;tag=x` is only checked."""
    if not parses_plainly(value):
        msg.from_  # noqa: B018 - the full parse, which raises if it must


def content_length_of(head: bytes) -> int | None:
    """For stream framing: the Content-Length in a raw header section, -1 when malformed, None when absent."""
    m = _CONTENT_LENGTH.search(head)
    if not m:
        return None
    v = m.group(1)
    return int(v) if v.isdigit() and len(v) <= 9 else -1


__all__ += ["Address", "SipUri", "content_length_of", "split_params"]
