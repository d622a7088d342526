"""SIP URIs (RFC 3261 section 19.1) and the header-level syntax shared by several headers.

`SipUri` is the parsed form of `sip:` and `sips:` URIs. `Address` is a name-addr or addr-spec as found in
From, To, Contact, Route and Record-Route (section 20.10 / 25.1). `split_params` and `split_commas` understand
quoted strings and angle brackets, so a `;` or `,` inside them is never taken for a separator.
"""

from __future__ import annotations

import re

__all__ = ["Address", "SipUri", "SipUriError", "format_params", "split_commas", "split_params", "unquote"]


class SipUriError(ValueError):
    """A URI or an address could not be parsed."""


# Fast paths for the common shapes; anything else goes through the general code.
_FAST_URI = re.compile(
    r"^(sips?):(?:([^:@;?\s]+)(?::([^@;?\s]*))?@)?(\[[0-9A-Fa-f:.]+\]|[^:;?\[\]@\s]+)(?::(\d{1,5}))?"
    r"((?:;[^?@]*)?)(?:\?(.*))?$",
    re.S,
)
_FAST_NAME_ADDR = re.compile(r'^(?:"((?:[^"\\]|\\.)*)"\s*|([^"<]*?)\s*)<([^<>]*)>(.*)$', re.S)
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# An unquoted display name is tokens separated by whitespace (section 25.1); anything else must be quoted.
_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]*")


def unquote(value: str) -> str:
    """The content of a quoted-string with its backslash escapes resolved, or the value itself."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            ch = inner[i]
            if ch == "\\" and i + 1 < len(inner):
                i += 1
                ch = inner[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return value


def _split_top(value: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings and angle brackets."""
    if '"' not in value and "<" not in value:
        return value.split(sep)
    parts: list[str] = []
    start = 0
    quoted = False
    angle = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            if angle:
                angle -= 1
        elif ch == sep and not angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def split_commas(value: str) -> list[str]:
    """The elements of a comma-separated header value, stripped, empty ones dropped."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    return [p for p in (x.strip() for x in _split_top(value, ",")) if p]


def split_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x"` (leading `;` optional) as an ordered dict; names lower-cased, values kept as written."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in _split_top(text, ";"):
        item = item.strip()
        if not item:
            continue
        name, eq, val = item.partition("=")
        params[name.strip().lower()] = val.strip() if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parses_plainly(text: str) -> bool:
    """True when `Address.parse(text)` takes its fast path and so cannot fail (`<sip:...>` with a port in range):
    a check at a fraction of the parse's cost, for headers that are validated now but read later, if at all."""
    m = _FAST_NAME_ADDR.match(text.strip())
    if m is None:
        return False
    plain = m.group(2)
    if plain and not _TOKENS.fullmatch(plain):
        return False
    u = _FAST_URI.match(m.group(3))
    if u is None:
        return False
    port = u.group(5)
    return not port or int(port) <= 65535


class SipUri:
    """A `sip:`/`sips:` URI. Other schemes (tel:, urn:) keep their text in `opaque` and are still carried."""

    __slots__ = ("headers", "host", "opaque", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        host: str = "",
        user: str | None = None,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        scheme: str = "sip",
        password: str | None = None,
        headers: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = params if params is not None else {}
        self.headers = headers
        self.opaque = opaque

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = _FAST_URI.match(text)
        if m is not None:
            port_text = m.group(5)
            port = int(port_text) if port_text else None
            if port is None or port <= 65535:
                ptext = m.group(6)
                return cls(
                    m.group(4).lower(),
                    m.group(2),
                    port,
                    split_params(ptext) if ptext else {},
                    m.group(1),
                    m.group(3),
                    m.group(7),
                )
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME.match(scheme):
            raise SipUriError(f"not a URI: {text[:80]!r}")
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            return cls(scheme=scheme, opaque=rest)
        headers: str | None = None
        if "?" in rest:
            rest, _, headers = rest.partition("?")
        user: str | None = None
        password: str | None = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            if ":" in userinfo:
                user, _, password = userinfo.partition(":")
            else:
                user = userinfo
            if not user:
                raise SipUriError("empty user part")
        hostport, _, ptext = rest.partition(";")
        m = _HOSTPORT.match(hostport)
        if not m:
            raise SipUriError(f"bad host: {hostport[:80]!r}")
        host = m.group(1).lower()
        port = int(m.group(2)) if m.group(2) else None
        if port is not None and port > 65535:
            raise SipUriError("port out of range")
        return cls(host, user, port, split_params(ptext), scheme, password, headers)

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def host_no_brackets(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def copy(self) -> SipUri:
        return SipUri(
            self.host, self.user, self.port, dict(self.params), self.scheme, self.password, self.headers, self.opaque
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        # A practical subset of section 19.1.4: scheme, user (case-sensitive), host and port (case-insensitive).
        if not isinstance(other, SipUri):
            return NotImplemented
        return (self.scheme, self.user, self.host, self.port, self.opaque) == (
            other.scheme,
            other.user,
            other.host,
            other.port,
            other.opaque,
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.user, self.host, self.port))


class Address:
    """name-addr / addr-spec with header parameters: `"Alice" <sip:alice@x>;tag=1`."""

    __slots__ = ("display_name", "params", "uri", "wildcard")

    def __init__(
        self,
        uri: SipUri,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
        wildcard: bool = False,
    ) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params: dict[str, str | None] = params if params is not None else {}
        self.wildcard = wildcard

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        m = _FAST_NAME_ADDR.match(text)
        if m is not None:
            quoted, plain, uri_text, rest = m.groups()
            if plain and not _TOKENS.fullmatch(plain):
                raise SipUriError("display name with characters outside a token, unquoted")
            name = unquote(f'"{quoted}"') if quoted is not None else (plain or None)
            return cls(SipUri.parse(uri_text), name, split_params(rest) if rest else {})
        if text == "*":
            return cls(SipUri(), wildcard=True)
        display: str | None = None
        if text.startswith('"'):
            i = 1
            n = len(text)
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == '"':
                    break
                i += 1
            if i >= n:
                raise SipUriError("unterminated display name")
            display = unquote(text[: i + 1])
            text = text[i + 1 :].lstrip()
            if not text.startswith("<"):
                raise SipUriError("display name without <uri>")
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipUriError("unterminated <uri>")
            if display is None:
                d = text[:lt].strip()
                if d and not _TOKENS.fullmatch(d):
                    raise SipUriError("display name with characters outside a token, unquoted")
                display = d or None
            uri = SipUri.parse(text[lt + 1 : gt])
            params = split_params(text[gt + 1 :])
        else:
            # addr-spec: any ";" starts header parameters (section 20.10).
            spec, _, ptext = text.partition(";")
            uri = SipUri.parse(spec)
            params = split_params(ptext)
        return cls(uri, display, params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        if self.display_name:
            dn = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            head = f'"{dn}" <{self.uri}>'
        else:
            head = f"<{self.uri}>"
        return head + format_params(self.params) if self.params else head

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"
