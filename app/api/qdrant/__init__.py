"""The Qdrant REST dialect, served at the root like Qdrant itself (port 6333)."""

from __future__ import annotations

from litestar import Request, Response, Router, get
from litestar.datastructures import State

from app.api.auth import PUBLIC
from app.api.qdrant.controllers import (
    AliasesController,
    CollectionsController,
    PointsController,
    ResumableController,
    SearchController,
)
from app.api.qdrant.indexes import PayloadIndexController
from app.api.qdrant.unsupported import unsupported_routes


@get("/", tags=["qdrant: service"], sync_to_thread=False, opt=PUBLIC)
def version_info(request: Request, state: State) -> Response:
    """Bare version info (no envelope): qdrant-client checks the major/minor version here."""
    return Response(
        {
            "title": "waypoint - vector search engine (qdrant compatible)",
            "version": state.settings.qdrant_version,
            "commit": None,
        }
    )


qdrant_router = Router(
    path="/",
    route_handlers=[
        version_info,
        AliasesController,
        CollectionsController,
        PointsController,
        SearchController,
        ResumableController,
        PayloadIndexController,
        *unsupported_routes,
    ],
)
