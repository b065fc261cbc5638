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


def test_openapi_document_lists_errors_in_each_dialects_envelope(server) -> None:
    """Every error is rendered by `app.api.envelope`; the document must say so, not list
    Litestar's own `{status_code, detail}` shape that no route answers with."""
    document = httpx.get(f"{server.url}/schema/openapi.json").json()
    schemas = document["components"]["schemas"]

    def error_fields(path: str, method: str, status: str) -> set[str]:
        response = document["paths"][path][method]["responses"][status]
        schema = response["content"]["application/json"]["schema"]
        return set(schemas[schema["$ref"].rsplit("/", 1)[1]]["properties"])

    for status in ("400", "404", "422"):
        assert error_fields("/collections/{collection_name}/points/query", "post", status) == {
            "status",
            "time",
        }
        assert error_fields("/upstash/{index_name}/query", "post", status) == {"error", "status"}
    assert error_fields("/collections/{collection_name}", "put", "409") == {"status", "time"}
    assert error_fields("/upstash/{index_name}/resumable-query", "post", "429") == {
        "error",
        "status",
    }
