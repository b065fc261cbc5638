"""Qdrant payload-index routes: `PUT /collections/{c}/index`, `DELETE …/index/{field}`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, put
from litestar.di import Provide

from app.api.deps import provide_services
from app.api.envelope import qdrant_ok
from app.api.qdrant.controllers import Wait, update_result
from app.api.qdrant.schemas import Body
from app.services.container import Services


class CreateFieldIndex(Body):
    field_name: str
    field_schema: Any = None


class PayloadIndexController(Controller):
    path = "/collections/{collection_name:str}/index"
    tags = ["qdrant: payload indexes"]
    dependencies = {"services": Provide(provide_services)}

    @put("/")
    async def create_index(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: CreateFieldIndex,
        wait: bool | None = Wait,
    ) -> Response:
        await services.payload_indexes.create(collection_name, data.field_name, data.field_schema)
        return qdrant_ok(request, update_result(0, wait))

    @delete("/{field_name:str}", status_code=200)
    async def delete_index(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        field_name: str,
        wait: bool | None = Wait,
    ) -> Response:
        await services.payload_indexes.delete(collection_name, field_name)
        return qdrant_ok(request, update_result(0, wait))
