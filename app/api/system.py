"""Liveness and readiness probes (no authentication, like Qdrant's)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from app.api.auth import PUBLIC
from app.services import search, sessions


@get(["/healthz", "/livez"], sync_to_thread=False, opt=PUBLIC, tags=["system"])
def healthz() -> Response:
    return Response({"status": "ok"}, status_code=200)


@get("/readyz", sync_to_thread=False, opt=PUBLIC, tags=["system"])
def readyz(state: State) -> Response:
    services = getattr(state, "services", None)
    if services is not None and services.ready:
        return Response({"status": "ready"}, status_code=200)
    return Response({"status": "loading"}, status_code=503)


# (Counters family, metric, label, help) of what `/metrics` reports.
METRICS = [
    (
        search.PLANS,
        "waypoint_search_plans_total",
        "plan",
        "Searches by plan (exact, hnsw; -filtered: matches listed first, -postfiltered: "
        "results confirmed after).",
    ),
    (
        search.FILTER_SOURCES,
        "waypoint_filter_candidates_total",
        "source",
        "Filtered searches by where their candidates came from (memory: payload columns, "
        "sql, cached).",
    ),
    (
        sessions.MODES,
        "waypoint_resumable_sessions_total",
        "mode",
        "Resumable queries started, by engine mode.",
    ),
]


@get("/metrics", sync_to_thread=False, opt=PUBLIC, tags=["system"], media_type="text/plain")
def metrics(state: State) -> str:
    """Prometheus text: counts since start-up, of every worker of this server."""
    services = getattr(state, "services", None)
    if services is None:
        return ""
    lines = []
    for family, metric, label, description in METRICS:
        lines += [f"# HELP {metric} {description}", f"# TYPE {metric} counter"]
        counts = services.counters.totals(family)
        lines += [f'{metric}{{{label}="{key}"}} {count}' for key, count in counts.items()]
    return "\n".join(lines) + "\n"
