"""`python -m app create-index`: works before any server has run (it migrates the database
itself), and a running server sees the new index on its very next request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from upstash_vector import Index

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "token"


def create_index(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "create-index", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def offline_index(database_url: str) -> str:
    """Made on a database no server has touched yet (no tables until the CLI migrates)."""
    made = create_index(database_url, "offline", "--dimension", "3", "--similarity", "euclidean")
    assert made.returncode == 0, made.stderr
    assert "created DENSE index offline (3 DIMENSIONS, EUCLIDEAN)" in made.stdout
    return "offline"


@pytest.fixture(scope="module")
def server_url(offline_index, server_factory) -> str:
    """Started after the CLI ran; it polls hourly, so only the change signal can tell it
    about an index made later."""
    env = {"WAYPOINT_API_KEY": TOKEN, "WAYPOINT_SYNC_INTERVAL": "3600"}
    return server_factory(env=env).url


def test_an_index_made_without_a_server_is_served(offline_index, server_url) -> None:
    index = Index(url=f"{server_url}/upstash/{offline_index}", token=TOKEN)
    info = index.info()
    assert (info.dimension, info.similarity_function, info.vector_count) == (3, "EUCLIDEAN", 0)
    index.upsert([("far", [1.0, 1.0, 1.0]), ("near", [0.0, 0.0, 0.0])])
    assert [(r.id, r.score) for r in index.query([0.0, 0.0, 0.0])] == [
        ("near", 1.0),
        ("far", 0.25),
    ]


def test_a_running_server_sees_a_new_index_at_once(server_url, database_url) -> None:
    index = Index(url=f"{server_url}/upstash/live", token=TOKEN)
    made = create_index(database_url, "live", "--dimension", "2", "--similarity", "DOT_PRODUCT")
    assert made.returncode == 0, made.stderr
    assert index.info().similarity_function == "DOT_PRODUCT"  # no wait, no retry
    index.upsert([("v", [0.6, 0.8])], namespace="ns")
    assert index.query([0.6, 0.8], namespace="ns")[0].score == 1.0


def test_create_index_errors_exit_non_zero(offline_index, database_url) -> None:
    again = create_index(database_url, "offline", "--dimension", "3")
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong = create_index(database_url, "other", "--dimension", "3", "--similarity", "HAMMING")
    assert wrong.returncode == 1
    assert "similarityFunction must be COSINE, EUCLIDEAN or DOT_PRODUCT" in wrong.stderr
