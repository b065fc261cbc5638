"""Qdrant endpoints Waypoint does not implement, each answering a clear 400.

Without a route they met Litestar's bare `404 Not Found`, which reads like a typo in the
client or a missing collection. Qdrant words bad requests as `Bad request: …`, so a client
(or its user) learns at once that the feature is absent, not that it called it wrongly.

The table is qdrant-client 1.20's REST surface (`qdrant_client/http/api/*.py`) minus what
Waypoint routes, plus `points/discover` and `/locks`, which older clients still call. The
routes stay out of the OpenAPI document: it lists what Waypoint does. They keep the API key
check of every route (`app.api.auth`); those that only read in Qdrant are `READ_ONLY`, so a
read-only key meets the 400 rather than a 403.
"""

from __future__ import annotations

from typing import NamedTuple

from litestar import Request, route
from litestar.handlers import HTTPRouteHandler
from litestar.types import Method

from app.api.auth import READ_ONLY
from app.errors import BadRequest

C = "/collections/{collection_name:str}"  # the parameter name of every collection route
SHARD = C + "/shards/{shard_id:str}"
SNAPSHOTS = "snapshots"
VECTORS = "changes to the named vectors of an existing collection"
DISTRIBUTED = "cluster and shard operations (distributed mode)"


class Unsupported(NamedTuple):
    methods: tuple[Method, ...]
    path: str
    what: str  # completes "Bad request: … not supported by Waypoint"
    reads: bool = False  # a read in Qdrant: a read-only key may call it


UNSUPPORTED = [
    Unsupported(("GET", "POST"), C + "/snapshots", SNAPSHOTS),
    Unsupported(("POST",), C + "/snapshots/upload", SNAPSHOTS),
    Unsupported(("PUT",), C + "/snapshots/recover", SNAPSHOTS),
    Unsupported(("GET", "DELETE"), C + "/snapshots/{snapshot_name:str}", SNAPSHOTS),
    Unsupported(("GET", "POST"), "/snapshots", SNAPSHOTS),
    Unsupported(("GET", "DELETE"), "/snapshots/{snapshot_name:str}", SNAPSHOTS),
    Unsupported(("GET", "POST"), SHARD + "/snapshots", SNAPSHOTS),
    Unsupported(("POST",), SHARD + "/snapshots/upload", SNAPSHOTS),
    Unsupported(("PUT",), SHARD + "/snapshots/recover", SNAPSHOTS),
    Unsupported(("GET", "DELETE"), SHARD + "/snapshots/{snapshot_name:str}", SNAPSHOTS),
    Unsupported(("GET",), SHARD + "/snapshot", SNAPSHOTS),
    Unsupported(("PUT", "DELETE"), C + "/vectors/{vector_name:str}", VECTORS),
    Unsupported(("GET",), C + "/optimizations", "optimization progress reports"),
    Unsupported(("POST",), C + "/facet", "facet counts", reads=True),
    Unsupported(("POST",), C + "/points/search/matrix/pairs", "distance matrices", reads=True),
    Unsupported(("POST",), C + "/points/search/matrix/offsets", "distance matrices", reads=True),
    Unsupported(("POST",), C + "/points/discover", "discovery queries", reads=True),
    Unsupported(("POST",), C + "/points/discover/batch", "discovery queries", reads=True),
    Unsupported(("GET",), "/cluster", DISTRIBUTED),
    Unsupported(("GET",), "/cluster/telemetry", DISTRIBUTED),
    Unsupported(("POST",), "/cluster/recover", DISTRIBUTED),
    Unsupported(("DELETE",), "/cluster/peer/{peer_id:str}", DISTRIBUTED),
    Unsupported(("GET", "POST"), C + "/cluster", DISTRIBUTED),
    Unsupported(("GET", "PUT"), C + "/shards", DISTRIBUTED),
    Unsupported(("POST",), C + "/shards/delete", DISTRIBUTED),
    Unsupported(("GET",), "/telemetry", "telemetry reports"),
    Unsupported(("GET", "POST"), "/locks", "write locks"),
    Unsupported(("GET", "DELETE"), "/issues", "issue reports"),
    Unsupported(("GET", "PUT"), "/quotas", "quotas"),
]


def refuse(request: Request) -> None:
    """Every unsupported route: the route's own `what` says which feature is missing."""
    what = request.route_handler.opt["unsupported"]
    raise BadRequest(f"Bad request: {what} are not supported by Waypoint")


def handler(entry: Unsupported) -> HTTPRouteHandler:
    """One route of the table; undocumented, as it offers nothing."""
    opt = {"unsupported": entry.what, **(READ_ONLY if entry.reads else {})}
    return route(
        entry.path,
        http_method=list(entry.methods),
        include_in_schema=False,
        sync_to_thread=False,
        opt=opt,
    )(refuse)


unsupported_routes = [handler(entry) for entry in UNSUPPORTED]
