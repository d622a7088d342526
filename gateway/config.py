"""Settings: config.yaml, validated, with MEETINGS_SECTION__KEY environment overrides."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signaling.digest import canonical_algorithm

ENV_PREFIX = "MEETINGS_"


class ConfigError(Exception):
    """A setting is unknown or has a bad value; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HttpSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert: str | None = None
    tls_key: str | None = None
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    public_uri: str | None = None
    idle_timeout_seconds: float = Field(15.0, gt=0)

    @field_validator("cors_origins")
    @classmethod
    def _wildcard_alone(cls, origins: list[str]) -> list[str]:
        if "*" in origins and origins != ["*"]:
            raise ValueError('"*" (any origin) goes alone: either any origin or a list of origins')
        return origins

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        return self


class SipSettings(_Section):
    host: str = "0.0.0.0"
    udp_port: int = Field(5060, ge=0, le=65535)
    tcp_port: int = Field(5060, ge=0, le=65535)
    tls_port: int | None = Field(None, ge=0, le=65535)
    tls_cert: str | None = None
    tls_key: str | None = None
    domain: str = Field("meetings.local", min_length=1)
    digest_algorithms: list[str] = Field(default_factory=lambda: ["MD5"])
    max_connections: int = Field(4096, ge=1)
    max_connections_per_source: int = Field(128, ge=1)
    message_timeout_seconds: float = Field(10.0, gt=0)
    idle_timeout_seconds: float = Field(120.0, ge=0)

    # What an unauthenticated source can make the server hold (signaling.stack.StackConfig says why these sizes).
    udp_max_request: int = Field(16384, ge=1500, le=65535)
    udp_max_bodyless_request: int = Field(4096, ge=1500, le=65535)
    max_transactions_per_source: int = Field(1000, ge=10)
    max_transactions: int = Field(20000, ge=100)
    overload_retry_after: int = Field(10, ge=1, le=3600)

    @field_validator("digest_algorithms")
    @classmethod
    def _digest_algorithms(cls, names: list[str]) -> list[str]:
        """Known names, each once, ending with MD5: sip.js (our web apps, Wazo's SDK) answers only the last
        challenge of a 401, and only MD5; other clients pick the first they know (RFC 8760 order)."""
        algorithms = [canonical_algorithm(name) for name in names]
        if len(set(algorithms)) != len(algorithms):
            raise ValueError("an algorithm is listed twice")
        if not algorithms or algorithms[-1] != "MD5":
            raise ValueError("must end with MD5 (sip.js, hence the web apps, answers only the last challenge, in MD5)")
        return algorithms

    @model_validator(mode="after")
    def _connection_caps(self) -> SipSettings:
        if self.max_connections_per_source > self.max_connections:
            raise ValueError("max_connections_per_source must not exceed max_connections")
        if 0 < self.idle_timeout_seconds < self.message_timeout_seconds:
            raise ValueError("idle_timeout_seconds must be 0 (off) or at least message_timeout_seconds")
        return self


#: the fewest RTP ports a local media worker may be given (a WebRTC participant takes one, a phone two or four)
MIN_WORKER_PORTS = 20


class MediaSettings(_Section):
    host_addresses: list[str] = Field(default_factory=list)
    public_address: str | None = None
    rtp_port_min: int = Field(10000, ge=1024, le=65535)
    rtp_port_max: int = Field(20000, ge=1024, le=65535)
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    mixed_speakers: int = Field(3, ge=1, le=16)
    allow_plain_rtp: bool = True
    #: media worker processes `meetings serve` starts on this machine (0: the rooms live in the server's process)
    workers: int = Field(0, ge=0, le=256)
    #: place rooms on media workers started elsewhere too (`meetings media-worker`), over bus.url
    external_workers: bool = False
    workers_exchange: str = Field("meetings-media", min_length=1)
    worker_request_timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("host_addresses")
    @classmethod
    def _ip_addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            ipaddress.ip_address(address)
        return addresses

    @model_validator(mode="after")
    def _port_range(self) -> MediaSettings:
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("rtp_port_min must not exceed rtp_port_max")
        if self.workers and (self.rtp_port_max - self.rtp_port_min + 1) // self.workers < MIN_WORKER_PORTS:
            raise ValueError(
                f"each of the {self.workers} workers gets a slice of rtp_port_min..rtp_port_max: "
                f"the range must hold at least {MIN_WORKER_PORTS} ports per worker"
            )
        return self

    @property
    def remote(self) -> bool:
        """Rooms go to media workers (over the broker at bus.url) rather than staying in this process."""
        return self.workers > 0 or self.external_workers

    def worker_port_ranges(self) -> list[tuple[int, int]]:
        """Each local worker's slice of the RTP port range (contiguous, the last one takes the rest)."""
        size = (self.rtp_port_max - self.rtp_port_min + 1) // self.workers
        starts = [self.rtp_port_min + index * size for index in range(self.workers)]
        return [(start, start + size - 1) for start in starts[:-1]] + [(starts[-1], self.rtp_port_max)]


class TurnSettings(_Section):
    """A TURN server (coturn) for guests whose network blocks UDP, with its REST API's short-lived credentials."""

    urls: list[str] = Field(default_factory=list)
    shared_secret: str | None = Field(None, min_length=16)
    credential_ttl_seconds: int = Field(86400, ge=60)

    @field_validator("urls")
    @classmethod
    def _turn_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("turn:", "turns:")) or len(url.split(":")) < 2 or not url.split(":")[1]:
                raise ValueError(f"{url!r}: a TURN URL is turn:host[:port][?transport=udp|tcp] or turns:host[:port]")
        return urls

    @model_validator(mode="after")
    def _secret_with_urls(self) -> TurnSettings:
        if self.urls and not self.shared_secret:
            raise ValueError("urls need shared_secret (coturn's static-auth-secret)")
        return self


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/meetings.db"


class MeetingSettings(_Section):
    max_participants: int = Field(100, ge=1, le=10000)
    expiry_seconds: int = Field(172800, ge=1, le=315_360_000)  # at most ten years: dates stay computable
    exten_prefix: str = Field("*41", max_length=16)
    last_n: int = Field(4, ge=0, le=25)


class AuthSettings(_Section):
    default_token_expiration: int = Field(7200, ge=1)
    max_token_expiration: int = Field(36000, ge=1)
    login_failures_per_source: int = Field(20, ge=1)
    login_failures_per_username: int = Field(10, ge=1)
    login_failure_window_seconds: float = Field(300.0, gt=0)
    password_hash_threads: int = Field(2, ge=1, le=64)
    password_hash_queue: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _default_within_max(self) -> AuthSettings:
        # otherwise every login that names no expiration would be refused
        if self.default_token_expiration > self.max_token_expiration:
            raise ValueError("default_token_expiration must not exceed max_token_expiration")
        return self


class TrunkPeer(_Section):
    host: str
    username: str | None = None
    password: str | None = None


class AsteriskSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls_ca: str | None = None
    tls_verify: bool = True
    username: str = "meetings-gateway"
    password: str = ""
    extension_pattern: str = "wazo-meeting-{uuid}"
    connect: Literal["on_first_participant", "always"] = "on_first_participant"
    hangup_when_empty: bool = True
    codecs: list[Literal["opus", "g722", "pcmu", "pcma"]] = ["opus", "g722", "pcmu", "pcma"]
    trunk_peers: list[TrunkPeer] = Field(default_factory=list)
    retry_min_seconds: float = Field(1.0, gt=0)
    retry_max_seconds: float = Field(60.0, gt=0)
    connect_timeout_seconds: float = Field(15.0, gt=0)
    keepalive_seconds: float = Field(30.0, ge=0)
    rtp_silence_seconds: float = Field(3.0, ge=0)
    probe_timeout_seconds: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _retry_range(self) -> AsteriskSettings:
        if self.retry_min_seconds > self.retry_max_seconds:
            raise ValueError("retry_min_seconds must not exceed retry_max_seconds")
        return self


class MetricsSettings(_Section):
    token: str | None = Field(None, min_length=16)
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)


class HealthSettings(_Section):
    database_timeout_seconds: float = Field(2.0, gt=0)
    loop_stall_seconds: float = Field(1.0, gt=0)


class DrainSettings(_Section):
    timeout_seconds: float = Field(600.0, ge=0)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class BusSettings(_Section):
    """RabbitMQ, so that several control instances share their events (off: events stay in the process)."""

    enabled: bool = False
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = Field("wazo-headers", min_length=1)
    cluster: str = Field("meetings", min_length=1)


class Settings(_Section):
    http: HttpSettings = HttpSettings()
    sip: SipSettings = SipSettings()
    media: MediaSettings = MediaSettings()
    turn: TurnSettings = TurnSettings()
    database: DatabaseSettings = DatabaseSettings()
    meetings: MeetingSettings = MeetingSettings()
    auth: AuthSettings = AuthSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    drain: DrainSettings = DrainSettings()
    logging: LoggingSettings = LoggingSettings()
    bus: BusSettings = BusSettings()

    @model_validator(mode="after")
    def _sip_tls_certificate(self) -> Settings:
        if self.sip.tls_port is not None:
            if bool(self.sip.tls_cert) != bool(self.sip.tls_key):
                raise ValueError("sip.tls_cert and sip.tls_key go together")
            if not (self.sip.tls_cert or self.http.tls_cert):
                raise ValueError("sip.tls_port needs a certificate: sip.tls_cert and sip.tls_key (or http's)")
        return self


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if len(path) < 2 or not all(path):
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid YAML value: {exc}") from exc


def describe_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from a YAML file (if it exists) and the environment; raise ConfigError naming a bad key."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if file.exists():
            try:
                loaded = yaml.safe_load(file.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{file}: the top level must be a mapping of sections")
            data = loaded
        elif Path(path) != Path("config.yaml"):
            raise ConfigError(f"{file}: no such configuration file")
    _apply_env(data, os.environ if environ is None else environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None
