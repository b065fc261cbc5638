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


@get("/metrics", sync_to_thread=False, opt=PUBLIC, tags=["system"], media_type="text/plain")
def metrics(state: State) -> str:
    """Prometheus text: search plans chosen and resumable-query modes, since start-up."""
    services = getattr(state, "services", None)
    if services is None:
        return ""
    lines = [
        "# HELP waypoint_search_plans_total Searches by plan (exact, hnsw; -filtered: "
        "matches listed first, -postfiltered: results confirmed after).",
        "# TYPE waypoint_search_plans_total counter",
        *(
            f'waypoint_search_plans_total{{plan="{plan}"}} {count}'
            for plan, count in sorted(services.search.plan_counts.items())
        ),
        "# HELP waypoint_filter_candidates_total Filtered searches by where their candidates "
        "came from (memory: payload columns, sql, cached).",
        "# TYPE waypoint_filter_candidates_total counter",
        *(
            f'waypoint_filter_candidates_total{{source="{source}"}} {count}'
            for source, count in sorted(services.search.filter_sources.items())
        ),
        "# HELP waypoint_resumable_sessions_total Resumable queries started, by engine mode.",
        "# TYPE waypoint_resumable_sessions_total counter",
        *(
            f'waypoint_resumable_sessions_total{{mode="{mode}"}} {count}'
            for mode, count in sorted(services.sessions.plans.items())
        ),
    ]
    return "\n".join(lines) + "\n"
