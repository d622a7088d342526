"""Tenants: a tree under the master tenant, small enough to keep in memory beside the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import insert, select

from gateway.db.engine import Database
from gateway.db.models import Tenant, utcnow


@dataclass(frozen=True)
class TenantInfo:
    uuid: UUID
    name: str
    parent_uuid: UUID | None

    def to_json(self) -> dict[str, object]:
        return {
            "uuid": str(self.uuid),
            "name": self.name,
            "parent_uuid": str(self.parent_uuid or self.uuid),
        }


class TenantService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tenants: dict[UUID, TenantInfo] = {}

    async def load(self) -> None:
        async with self._db.read() as connection:
            rows = (await connection.execute(select(Tenant.uuid, Tenant.name, Tenant.parent_uuid))).all()
        self._tenants = {row.uuid: TenantInfo(row.uuid, row.name, row.parent_uuid) for row in rows}

    @property
    def master(self) -> TenantInfo | None:
        return next((tenant for tenant in self._tenants.values() if tenant.parent_uuid is None), None)

    def get(self, tenant_uuid: UUID) -> TenantInfo | None:
        return self._tenants.get(tenant_uuid)

    def all(self) -> list[TenantInfo]:
        return list(self._tenants.values())

    def find(self, name_or_uuid: str) -> TenantInfo | None:
        for tenant in self._tenants.values():
            if str(tenant.uuid) == name_or_uuid or tenant.name == name_or_uuid:
                return tenant
        return None

    def is_master(self, tenant_uuid: UUID) -> bool:
        tenant = self._tenants.get(tenant_uuid)
        return tenant is not None and tenant.parent_uuid is None

    def descendants(self, tenant_uuid: UUID) -> set[UUID]:
        """The tenant and every tenant below it."""
        found = {tenant_uuid}
        grew = True
        while grew:
            grew = False
            for tenant in self._tenants.values():
                if tenant.parent_uuid in found and tenant.uuid not in found:
                    found.add(tenant.uuid)
                    grew = True
        return found

    def visible_from(self, tenant_uuid: UUID, target: UUID) -> bool:
        return target in self.descendants(tenant_uuid)

    async def create(self, name: str, parent_uuid: UUID | None) -> TenantInfo:
        tenant = TenantInfo(uuid.uuid4(), name, parent_uuid)
        async with self._db.write() as connection:
            await connection.execute(
                insert(Tenant), dict(uuid=tenant.uuid, name=name, parent_uuid=parent_uuid, created_at=utcnow())
            )
        self._tenants[tenant.uuid] = tenant
        return tenant
