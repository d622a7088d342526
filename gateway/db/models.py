"""Tables. Meetings, credentials and settings are durable; rooms and calls are runtime state."""

from __future__ import annotations

import datetime
import uuid
from uuid import UUID

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    uuid: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    # The master tenant is its own root: parent_uuid is null only for it.
    parent_uuid: Mapped[UUID | None] = mapped_column(Uuid, ForeignKey("tenants.uuid"), nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"

    uuid: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("tenants.uuid", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(256), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    firstname: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lastname: Mapped[str | None] = mapped_column(String(128), nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The user's own SIP line, for his browser or phone.
    sip_username: Mapped[str] = mapped_column(String(64), unique=True)
    sip_password: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    __tablename__ = "tokens"

    # SHA-256 of the token: a database leak does not hand out live tokens.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("users.uuid", ondelete="CASCADE"), index=True)
    session_uuid: Mapped[UUID] = mapped_column(Uuid, default=uuid.uuid4)
    issued_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)


class Meeting(Base):
    __tablename__ = "meetings"

    uuid: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("tenants.uuid", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    persistent: Mapped[bool] = mapped_column(Boolean, default=False)
    require_authorization: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    # When a persistent meeting was last made non-persistent: its expiry delay runs from then, not from creation.
    expiry_start: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exten: Mapped[str] = mapped_column(String(32), unique=True)
    guest_sip_username: Mapped[str] = mapped_column(String(128), unique=True)
    guest_sip_password: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_meetings_tenant_creation", "tenant_uuid", "creation_time"),)


class MeetingOwner(Base):
    __tablename__ = "meeting_owners"

    meeting_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("meetings.uuid", ondelete="CASCADE"), primary_key=True)
    user_uuid: Mapped[UUID] = mapped_column(
        Uuid, ForeignKey("users.uuid", ondelete="CASCADE"), primary_key=True, index=True
    )


class MeetingAuthorization(Base):
    __tablename__ = "meeting_authorizations"

    uuid: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    meeting_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("meetings.uuid", ondelete="CASCADE"), index=True)
    guest_uuid: Mapped[UUID] = mapped_column(Uuid)
    guest_name: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    creation_time: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


class HttpIngress(Base):
    __tablename__ = "ingresses_http"

    uuid: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_uuid: Mapped[UUID] = mapped_column(Uuid, ForeignKey("tenants.uuid", ondelete="CASCADE"), unique=True)
    uri: Mapped[str] = mapped_column(String(1024))
    # written from config.yaml (http.public_uri or the bind address): follows it until set through the API
    from_config: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ConfbridgeProfile(Base):
    """Asterisk confbridge.conf sections (wazo_default_bridge, wazo_default_user): server-wide options."""

    __tablename__ = "confbridge_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    options: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
