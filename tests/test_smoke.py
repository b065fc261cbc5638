"""The service starts, answers health probes and the bare Qdrant version document."""

from __future__ import annotations

import httpx


def test_health_and_version(server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    info = httpx.get(f"{server.url}/").json()
    assert info["version"].startswith("1.20.")


def test_openapi_document_renders_with_one_id_per_operation(server) -> None:
    """`/schema` is advertised in the README: every route must be in it, each with its own id
    (`/delete-namespace` and `/delete-namespace/{namespace}` once collided, and the whole
    document was a 500)."""
    response = httpx.get(f"{server.url}/schema/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "/collections/{collection_name}/points/query" in paths
    assert "/upstash/{index_name}/delete-namespace" in paths
    assert "/upstash/{index_name}/delete-namespace/{namespace}" in paths
    assert httpx.get(f"{server.url}/schema/scalar").status_code == 200
