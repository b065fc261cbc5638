"""The service starts, answers health probes and the bare Qdrant version document."""

from __future__ import annotations

import httpx


def test_health_and_version(server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    info = httpx.get(f"{server.url}/").json()
    assert info["version"].startswith("1.20.")
