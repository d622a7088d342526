"""HTTP ingresses: one per tenant, kept in memory beside the database since every meeting view needs one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.db.engine import Database
from gateway.db.models import HttpIngress
from gateway.http.errors import InvalidData, NotFound


@dataclass(frozen=True)
class Ingress:
    uuid: UUID
    tenant_uuid: UUID
    uri: str
    #: written from config.yaml: follows it at each start until an operator sets the ingress through the API
    from_config: bool = False

    def to_json(self) -> dict[str, str]:
        return {"uuid": str(self.uuid), "tenant_uuid": str(self.tenant_uuid), "uri": self.uri}


class IngressService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_tenant: dict[UUID, Ingress] = {}
        self.master_tenant: UUID | None = None

    async def load(self, master_tenant: UUID | None) -> None:
        self.master_tenant = master_tenant
        async with self._db.read() as connection:
            rows = (await connection.execute(select(HttpIngress))).all()
        self._by_tenant = {
            row.tenant_uuid: Ingress(row.uuid, row.tenant_uuid, row.uri, row.from_config) for row in rows
        }

    async def follow_configuration(self, tenant_uuid: UUID, uri: str) -> Ingress | None:
        """The tenant's ingress written from the configuration takes the configured URI (a restart after
        `http.public_uri` changed); one an operator set through the API is left alone. Returns the ingress."""
        ingress = self._by_tenant.get(tenant_uuid)
        if ingress is not None and ingress.from_config and ingress.uri != uri:
            ingress = await self.update(ingress, uri, from_config=True)
        return ingress

    def of_tenant(self, tenant_uuid: UUID) -> Ingress | None:
        return self._by_tenant.get(tenant_uuid)

    def applying_to(self, tenant_uuid: UUID) -> Ingress | None:
        """The tenant's own ingress, or the master tenant's as the fallback."""
        own = self._by_tenant.get(tenant_uuid)
        if own is None and self.master_tenant is not None:
            return self._by_tenant.get(self.master_tenant)
        return own

    def uri_for(self, tenant_uuid: UUID) -> str | None:
        ingress = self.applying_to(tenant_uuid)
        return ingress.uri if ingress else None

    def get(self, ingress_uuid: UUID, tenants: set[UUID]) -> Ingress:
        for ingress in self._by_tenant.values():
            if ingress.uuid == ingress_uuid and ingress.tenant_uuid in tenants:
                return ingress
        raise NotFound("ingresses", uuid=str(ingress_uuid))

    async def create(self, tenant_uuid: UUID, uri: str, from_config: bool = False) -> Ingress:
        if tenant_uuid in self._by_tenant:
            raise InvalidData({"tenant_uuid": "this tenant already has an HTTP ingress; update it instead"})
        ingress = Ingress(uuid.uuid4(), tenant_uuid, uri, from_config)
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    insert(HttpIngress),
                    dict(uuid=ingress.uuid, tenant_uuid=tenant_uuid, uri=uri, from_config=from_config),
                )
        except IntegrityError:
            raise InvalidData({"tenant_uuid": "this tenant already has an HTTP ingress; update it instead"}) from None
        self._by_tenant[tenant_uuid] = ingress
        return ingress

    async def update(self, ingress: Ingress, uri: str, from_config: bool = False) -> Ingress:
        """Set the URI; through the API (from_config False) the operator's choice then outranks config.yaml."""
        async with self._db.write() as connection:
            await connection.execute(
                update(HttpIngress).where(HttpIngress.uuid == ingress.uuid).values(uri=uri, from_config=from_config)
            )
        updated = Ingress(ingress.uuid, ingress.tenant_uuid, uri, from_config)
        self._by_tenant[ingress.tenant_uuid] = updated
        return updated

    async def delete(self, ingress: Ingress) -> None:
        async with self._db.write() as connection:
            await connection.execute(delete(HttpIngress).where(HttpIngress.uuid == ingress.uuid))
        self._by_tenant.pop(ingress.tenant_uuid, None)
