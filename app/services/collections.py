"""Creating, describing and dropping collections."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app import limits
from app.db import aliases as alias_sql
from app.db import payload_indexes as payload_index_sql
from app.db import repository
from app.db.database import Database
from app.errors import AlreadyExists, BadRequest, CollectionNotFound, NotFound, UnknownVectorName
from app.index.registry import IndexRegistry
from app.models import (
    DEFAULT_VECTOR,
    Collection,
    CollectionConfig,
    SparseParams,
    config_to_json,
    hnsw_from_json,
)
from app.services.building import BuildBoard, Peers
from app.services.catalog import Catalog
from app.services.change_feed import ChangeSignal

_NAME = re.compile(r"^[^/\\\x00]{1,255}$")


@dataclass(frozen=True, slots=True)
class AliasAction:
    """One of Qdrant's alias operations: `create`, `delete` or `rename`."""

    kind: str
    alias: str
    collection: str | None = None  # create: the collection the alias points at
    new_alias: str | None = None  # rename: the alias's new name


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A partial update of a collection's settings (Qdrant's `PATCH /collections/{name}`).

    Every part holds only the fields the caller sent, already checked for type and range.
    HNSW fields merge into the collection's and each vector's own; a vector without its
    own HNSW fields follows the collection's, as at creation.
    """

    hnsw: dict[str, int] = field(default_factory=dict)
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> changed fields
    optimizers: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # other top-level fields, replaced
    sparse_vectors: dict[str, SparseParams] = field(default_factory=dict)  # name -> new

    def apply(self, config: CollectionConfig) -> CollectionConfig:
        for name in self.vectors:
            if name not in config.vectors:
                raise UnknownVectorName(name)
        for name in self.sparse_vectors:
            if name not in config.sparse_vectors:
                raise UnknownVectorName(name)
        sent = {**config.as_sent, **self.settings}
        _merge(sent, "hnsw_config", self.hnsw)
        _merge(sent, "optimizers_config", self.optimizers)
        hnsw = hnsw_from_json(sent.get("hnsw_config") or {})
        vectors = {}
        for name, params in config.vectors.items():
            own = self.vectors.get(name, {})
            vector_sent = {**params.as_sent, **own}
            vector_sent.pop("hnsw_config", None)
            _merge(vector_sent, "hnsw_config", params.as_sent.get("hnsw_config"))
            _merge(vector_sent, "hnsw_config", own.get("hnsw_config"))
            vector_hnsw = hnsw_from_json(vector_sent.get("hnsw_config") or {}, hnsw)
            vectors[name] = dataclasses.replace(params, hnsw=vector_hnsw, as_sent=vector_sent)
        sparse = {**config.sparse_vectors, **self._sparse_merged(config)}
        if self.sparse_vectors:
            sent["sparse_vectors"] = {name: params.as_sent for name, params in sparse.items()}
        return dataclasses.replace(
            config, vectors=vectors, hnsw=hnsw, as_sent=sent, sparse_vectors=sparse
        )

    def _sparse_merged(self, config: CollectionConfig) -> dict[str, SparseParams]:
        """The changed sparse vectors: fields sent replace the stored ones (`index` merges)."""
        merged = {}
        for name, change in self.sparse_vectors.items():
            sent = {**config.sparse_vectors[name].as_sent}
            _merge(sent, "index", change.as_sent.get("index"))
            if "modifier" in change.as_sent:
                sent["modifier"] = change.as_sent["modifier"]
            merged[name] = SparseParams(idf=sent.get("modifier") == "idf", as_sent=sent)
        return merged


def _merge(sent: dict[str, Any], key: str, change: dict[str, Any] | None) -> None:
    """Merge `change` into the object `sent[key]` (left out while it would be empty)."""
    if change:
        sent[key] = {**(sent.get(key) or {}), **change}


@dataclass(frozen=True, slots=True)
class CollectionStats:
    points: int
    indexed_vectors: int
    building: bool


class CollectionService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: IndexRegistry,
        board: BuildBoard,
        signal: ChangeSignal,
        on_commit: Callable[[], None],
        catalog_lock: asyncio.Lock,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.board = board  # what the server's other workers have applied and build
        self.signal = signal  # the write generation every worker must apply
        self.on_commit = on_commit
        self.catalog_lock = catalog_lock  # the change feed's: see ChangeFeed.lock

    async def create(self, name: str, config: CollectionConfig, dialect: str = "qdrant") -> None:
        if not _NAME.match(name):
            raise BadRequest(
                f"Wrong input: collection name {name!r} must be 1-255 characters without '/'"
            )
        if name in self.catalog.aliases():
            raise AlreadyExists(f"Wrong input: Alias `{name}` already exists!")
        async with self.catalog_lock:
            await self._create(name, config, dialect)

    async def _create(self, name: str, config: CollectionConfig, dialect: str) -> None:
        async with self.db.begin() as conn:
            collection_id = await repository.insert_collection(
                conn, name, config_to_json(config), dialect
            )
            if collection_id is None:
                raise AlreadyExists(f"Wrong input: Collection `{name}` already exists!")
            namespaces = {
                row.name: row.id
                for row in await repository.select_namespaces(conn)
                if row.collection_id == collection_id
            }
        collection = Collection(collection_id, name, config, dialect, namespaces)
        self.registry.configure(namespaces.values(), config)
        self.catalog.add(collection)
        self.on_commit()

    async def update(self, name: str, change: ConfigChange) -> None:
        """Apply `change` to the collection's settings; segments whose graph parameters
        changed rebuild their graphs in the background (searches go on meanwhile)."""
        async with self.catalog_lock:
            collection = self.catalog.get(name)
            config = change.apply(collection.config)
            async with self.db.begin() as conn:
                if not await repository.update_collection_config(
                    conn, collection.id, config_to_json(config)
                ):
                    raise CollectionNotFound(name)
            collection.config = config
            self.registry.configure(collection.namespaces.values(), config)
            self.on_commit()

    async def delete(self, name: str) -> bool:
        async with self.catalog_lock:
            collection = self.catalog.find(name)
            if collection is None:
                return False
            async with self.db.begin() as conn:
                # its declarations go with it (cascade); indexes no other collection uses too
                indexes = await payload_index_sql.used_by(conn, collection.id)
                deleted = await repository.delete_collection(conn, collection.id)
                await payload_index_sql.drop_unused_indexes(conn, indexes)
            self.catalog.remove(name)
            self.registry.drop_namespaces(set(collection.namespaces.values()))
            self.on_commit()
            return deleted

    async def update_aliases(self, actions: list[AliasAction]) -> None:
        """Apply alias actions in order, all or none (one transaction), like Qdrant."""
        async with self.catalog_lock:
            async with self.db.begin() as conn:
                await alias_sql.lock_aliases(conn)
                current = await alias_sql.select_aliases(conn)
                for action in actions:
                    await self._apply_alias(conn, current, action)
                fresh = await alias_sql.select_aliases(conn)
            self.catalog.set_aliases(fresh)
            self.on_commit()

    async def _apply_alias(self, conn, current: dict[str, str], action: AliasAction) -> None:
        if action.kind == "delete":
            await alias_sql.delete_alias(conn, action.alias)
            current.pop(action.alias, None)
            return
        name = action.new_alias if action.kind == "rename" else action.alias
        assert name is not None
        limits.check_name("an alias name", name)
        if self.catalog.find(name) is not None:
            raise AlreadyExists(f"Wrong input: Collection `{name}` already exists!")
        if action.kind == "rename":
            if action.alias not in current:
                raise NotFound(f"Not found: Alias `{action.alias}` doesn't exist!")
            target = self.catalog.get(current.pop(action.alias))
            await alias_sql.delete_alias(conn, action.alias)
        else:
            collection = self.catalog.find(action.collection or "")
            if collection is None:
                raise CollectionNotFound(action.collection or "")
            target = collection
        await alias_sql.put_alias(conn, name, target.id)
        current[name] = target.name

    def aliases(self, name: str | None = None) -> list[tuple[str, str]]:
        """(alias, collection) pairs, all or those of one collection (404 if missing)."""
        if name is not None:
            self.catalog.get(name)
        pairs = self.catalog.aliases().items()
        return [(a, c) for a, c in pairs if name is None or c == self.catalog.get(name).name]

    async def ensure_namespace(self, name: str, namespace: str) -> int:
        """The namespace's id, creating it (and its segments) on first use."""
        limits.check_name("a namespace name", namespace)
        collection = self.catalog.get(name)
        namespace_id = collection.namespaces.get(namespace)
        if namespace_id is not None:
            return namespace_id
        async with self.catalog_lock:
            async with self.db.begin() as conn:
                if not await repository.lock_collection(conn, collection.id):
                    raise CollectionNotFound(name)
                namespace_id = await repository.ensure_namespace(conn, collection.id, namespace)
            collection.namespaces[namespace] = namespace_id
            self.registry.configure([namespace_id], collection.config)
            self.on_commit()
        return namespace_id

    def get(self, name: str) -> Collection:
        return self.catalog.get(name)

    def exists(self, name: str) -> bool:
        return self.catalog.find(name) is not None

    def list(self) -> list[Collection]:
        return self.catalog.all()

    async def namespace_counts(self, name: str) -> dict[str, int]:
        """Points per namespace (every namespace listed, empty ones with 0)."""
        collection = self.catalog.get(name)
        async with self.db.connect() as conn:
            counts = await repository.count_by_namespace(conn, list(collection.namespaces.values()))
        return {ns: counts.get(ns_id, 0) for ns, ns_id in sorted(collection.namespaces.items())}

    async def stats(self, name: str, namespace: str = "") -> CollectionStats:
        collection = self.catalog.get(name)
        namespace_id = collection.namespaces.get(namespace)
        if namespace_id is None:
            raise CollectionNotFound(name)
        async with self.db.connect() as conn:
            points = await repository.count_points(conn, namespace_id)
        indexed = sum(
            segment.indexed
            for vector_name in collection.config.vectors or {DEFAULT_VECTOR: None}
            if (segment := self.registry.get(namespace_id, vector_name)) is not None
        )
        peers = self.board.peers()
        return CollectionStats(
            points=points,
            indexed_vectors=indexed,
            building=self.registry.busy({namespace_id})
            or namespace_id in peers.building
            or self._peers_behind_on(peers, namespace_id),
        )

    def _peers_behind_on(self, peers: Peers, namespace_id: int) -> bool:
        """Whether another worker has not applied some write to this namespace yet. A write
        to another collection leaves this one as it was (when the signal's ring still says
        which namespaces the writes the laggard lacks went to)."""
        if peers.applied is None or not peers.behind(self.signal.current()):
            return False
        written = self.signal.since(peers.applied).namespaces
        return written is None or namespace_id in written
