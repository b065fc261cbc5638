"""Domain results → Qdrant wire shapes (ScoredPoint, Record, CollectionInfo)."""

from __future__ import annotations

from typing import Any

from app.models import DEFAULT_VECTOR, Collection
from app.services.collections import CollectionStats
from app.services.groups import Group
from app.services.points import Record


def _vector_output(record: Record, named: bool) -> Any:
    vectors = record.vectors or {}
    if not named:
        return vectors.get(DEFAULT_VECTOR)
    return vectors


def record(point: Record, named: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": point.id, "payload": point.payload}
    if point.vectors is not None:
        out["vector"] = _vector_output(point, named)
    if "order_value" in point.extra:
        out["order_value"] = point.extra["order_value"]
    return out


def scored_point(point: Record, named: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": point.id, "version": point.version, "score": point.score}
    if point.payload is not None:
        out["payload"] = point.payload
    if point.vectors is not None:
        out["vector"] = _vector_output(point, named)
    if "order_value" in point.extra:
        out["order_value"] = point.extra["order_value"]
    return out


def groups(found: list[Group], named: bool, lookup_named: bool) -> dict[str, Any]:
    """A GroupsResult: each group's id, hits (ScoredPoints) and lookup Record if any."""
    out = []
    for group in found:
        item: dict[str, Any] = {
            "id": group.id,
            "hits": [scored_point(hit, named) for hit in group.hits],
        }
        if group.lookup is not None:
            item["lookup"] = record(group.lookup, lookup_named)
        out.append(item)
    return {"groups": out}


def collection_info(collection: Collection, stats: CollectionStats) -> dict[str, Any]:
    config = collection.config
    sent = config.as_sent
    hnsw = config.hnsw
    vectors = (
        {name: p.as_sent for name, p in config.vectors.items()}
        if config.named
        else config.vectors[DEFAULT_VECTOR].as_sent
    )
    params: dict[str, Any] = {
        "vectors": vectors,
        "shard_number": sent.get("shard_number") or 1,
        "replication_factor": sent.get("replication_factor") or 1,
        "write_consistency_factor": sent.get("write_consistency_factor") or 1,
        "on_disk_payload": sent.get("on_disk_payload", True),
    }
    if sent.get("sparse_vectors"):
        params["sparse_vectors"] = sent["sparse_vectors"]
    optimizer = {
        "deleted_threshold": 0.2,
        "vacuum_min_vector_number": 1000,
        "default_segment_number": 0,
        "flush_interval_sec": 5,
    }
    optimizer.update(sent.get("optimizers_config") or {})
    return {
        "status": "yellow" if stats.building else "green",
        "optimizer_status": "ok",
        "segments_count": max(1, len(config.vectors)),
        "points_count": stats.points,
        "indexed_vectors_count": stats.indexed_vectors,
        "config": {
            "params": params,
            "hnsw_config": {
                "m": hnsw.m,
                "ef_construct": hnsw.ef_construct,
                "full_scan_threshold": hnsw.full_scan_threshold,
            },
            "optimizer_config": optimizer,
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": sent.get("quantization_config"),  # stored, not applied
        },
        "payload_schema": {},
    }


def aliases(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"aliases": [{"alias_name": a, "collection_name": c} for a, c in pairs]}
