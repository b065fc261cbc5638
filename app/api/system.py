"""Liveness and readiness probes (no authentication, like Qdrant's)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from app.api.auth import PUBLIC


@get("/healthz", sync_to_thread=False, opt=PUBLIC, tags=["system"])
def healthz() -> Response:
    return Response({"status": "ok"}, status_code=200)


@get("/readyz", sync_to_thread=False, opt=PUBLIC, tags=["system"])
def readyz(state: State) -> Response:
    services = getattr(state, "services", None)
    if services is not None and services.ready:
        return Response({"status": "ready"}, status_code=200)
    return Response({"status": "loading"}, status_code=503)
