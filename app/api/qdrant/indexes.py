"""Qdrant payload-index routes: `PUT /collections/{c}/index`, `DELETE …/index/{field}`.

A field name may hold `/`. qdrant-client percent-encodes it (`a%2Fb`), but the server decodes
the path before routing, so the field is the rest of the path, slashes and all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

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

    @delete("/{field_name:path}", status_code=200)
    async def delete_index(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        field_name: str,
        wait: bool | None = Wait,
    ) -> Response:
        field = requested_field(request, field_name)
        await services.payload_indexes.delete(collection_name, field)
        return qdrant_ok(request, update_result(0, wait))


def requested_field(request: Request, routed: str) -> str:
    """The field name as sent. Routing joins the path's segments with single slashes and
    drops empty ones (`a%2F%2Fb` routes as `/a/b`), which could name another field, so
    the name is read from the undecoded path when that agrees with the route."""
    raw: bytes = request.scope.get("raw_path") or b""
    root = request.scope.get("root_path", "").encode("latin-1")
    if root and raw.startswith(root):
        raw = raw[len(root) :]
    parts = raw.decode("latin-1").split("/", 4)
    if len(parts) == 5 and parts[:2] == ["", "collections"] and parts[3] == "index":
        field = unquote(parts[4])
        if "/" + "/".join(p for p in field.split("/") if p) == routed:
            return field
    return routed.lstrip("/")
