"""The ASGI application factories: `create_app(settings)` (Litestar) and `create_asgi`
(what servers run: Litestar behind the search fast path)."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from app import limits
from app.api import system
from app.api.auth import ApiKeyMiddleware
from app.api.envelope import handle_error, mark_started
from app.api.openapi import document_errors, operation_id
from app.api.qdrant import qdrant_router
from app.api.qdrant.fastpath import FastPath
from app.api.timing import ServerTimingMiddleware
from app.api.upstash import UpstashController
from app.lifespan import services_lifespan
from app.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = Litestar(
        route_handlers=[
            system.healthz,
            system.readyz,
            system.metrics,
            qdrant_router,
            UpstashController,
        ],
        lifespan=[services_lifespan],
        before_request=mark_started,
        middleware=[ServerTimingMiddleware(), ApiKeyMiddleware()],
        exception_handlers={Exception: handle_error},
        openapi_config=OpenAPIConfig(
            title="Waypoint",
            version="0.1.0",
            description="Vector search on PostgreSQL with resumable queries "
            "(Qdrant and Upstash REST dialects).",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            operation_id_creator=operation_id,
        ),
        request_max_body_size=settings.max_request_bytes,
        debug=False,
    )
    app.state.settings = settings
    limits.configure(settings.limits)
    document_errors(app)
    return app


def create_asgi(settings: Settings | None = None) -> FastPath:
    """The app servers run: the search fast path in front of `create_app(settings)`."""
    return FastPath(create_app(settings))


def app_from_env() -> FastPath:
    return create_asgi()
