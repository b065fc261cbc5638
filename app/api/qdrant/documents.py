"""Qdrant `Document`s: text the server embeds wherever a vector goes.

A qdrant-client with `cloud_inference=True` sends `{"text", "model", "options"?}` in place
of a vector: a point's vector (unnamed, or under a name), a batch column entry, an
`update_vectors` vector, a query, its `nearest`, its recommend examples, and the same at
every prefetch level. Qdrant embeds them before anything else happens, so this module does
too: it finds the documents in a decoded body (`in_*`), embeds them all, grouped by model
and options, and writes each vector back where its document was, in the form a client
would have sent (a list of floats, or `{"indices", "values"}`). The body then goes through
the ordinary parsing and validation, which checks the vector against the collection (its
size, dense or sparse) exactly as if the client had sent it.

A document in a point is embedded as a document, one in a query as a query: BM25 weighs a
stored text's terms by frequency and a query's by 1 (`app/embedding/bm25.py`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.api.qdrant import schemas
from app.embedding.registry import Embedding, TextModel
from app.errors import BadRequest
from app.models import SparseVector
from app.services.embedding import EmbeddingService, check_text

Holder = dict[str, Any] | list[Any] | msgspec.Struct
Key = str | int


@dataclass(slots=True)
class _Found:
    holder: Holder
    key: Key
    text: str
    model: TextModel
    options: Any


@dataclass(slots=True)
class Documents:
    """The documents of one body, each with where its vector goes."""

    as_documents: list[_Found] = field(default_factory=list)
    as_queries: list[_Found] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.as_documents or self.as_queries)

    async def embed(self, embedding: EmbeddingService) -> None:
        """Embed every document, one call per model and options, and put the vectors in."""
        for found, query in ((self.as_documents, False), (self.as_queries, True)):
            groups: dict[tuple[str, str], list[_Found]] = defaultdict(list)
            for item in found:
                groups[(item.model.name, json.dumps(item.options, sort_keys=True))].append(item)
            for items in groups.values():
                first = items[0]
                try:
                    vectors = await embedding.embed(
                        first.model, [i.text for i in items], query=query, options=first.options
                    )
                except BadRequest as exc:
                    raise BadRequest(f"Wrong input: {exc.message}") from None
                for item, vector in zip(items, vectors, strict=True):
                    _put(item.holder, item.key, _as_sent(vector))

    # ------------------------------------------------------------------ finding

    def vector(self, holder: Holder, key: Key, *, query: bool) -> None:
        """The value at `holder[key]`, if it is a document."""
        value = _get(holder, key)
        if not is_document(value):
            return
        found = _Found(holder, key, *_document(value))
        (self.as_queries if query else self.as_documents).append(found)

    def point_vector(self, holder: Holder, key: Key) -> None:
        """A point's `vector`: a document, or named vectors any of which may be one."""
        value = _get(holder, key)
        if is_document(value):
            self.vector(holder, key, query=False)
        elif isinstance(value, dict):
            for name in value:
                self.vector(value, name, query=False)

    def columns(self, columns: Any) -> None:
        """A batch's `vectors`: one column (a list), or columns by name."""
        for column in columns.values() if isinstance(columns, dict) else [columns]:
            if isinstance(column, list):
                for position in range(len(column)):
                    self.vector(column, position, query=False)

    def query(self, holder: Holder, key: Key) -> None:
        """A query: a document, `{"nearest": …}`, or recommend examples."""
        value = _get(holder, key)
        self.vector(holder, key, query=True)
        if not isinstance(value, dict) or is_document(value):
            return
        if "nearest" in value:
            self.vector(value, "nearest", query=True)
        recommend = value.get("recommend")
        if isinstance(recommend, dict):
            for side in ("positive", "negative"):
                examples = recommend.get(side)
                if isinstance(examples, list):
                    for position in range(len(examples)):
                        self.vector(examples, position, query=True)

    def prefetch(self, raw: Any) -> None:
        """Every level of a `prefetch` (one object or a list)."""
        for level in raw if isinstance(raw, list) else [raw]:
            if isinstance(level, dict):
                self.query(level, "query")
                self.prefetch(level.get("prefetch"))


def is_document(value: Any) -> bool:
    """`{"text": str, ...}`: no vector has that shape (a named vector called `text` would
    hold a list or `{"indices", "values"}`, never a string)."""
    if isinstance(value, dict) and "model" in value and ("image" in value or "object" in value):
        raise BadRequest("Wrong input: this server embeds text Documents only, not images")
    return isinstance(value, dict) and isinstance(value.get("text"), str)


def _document(value: dict[str, Any]) -> tuple[str, TextModel, Any]:
    unknown = set(value) - {"text", "model", "options"}
    if unknown:
        raise BadRequest(f"Wrong input: a Document has no field {', '.join(sorted(unknown))}")
    if not isinstance(value.get("model"), str):
        raise BadRequest("Wrong input: a Document needs a model (its name, a string)")
    try:
        check_text(value["text"])
        return value["text"], EmbeddingService.model(value["model"]), value.get("options")
    except BadRequest as exc:
        raise BadRequest(f"Wrong input: {exc.message}") from None


def _as_sent(vector: Embedding) -> Any:
    if isinstance(vector, SparseVector):
        return {"indices": vector.indices.tolist(), "values": vector.values.tolist()}
    return vector.tolist()


def _get(holder: Holder, key: Key) -> Any:
    if isinstance(holder, msgspec.Struct):
        return getattr(holder, str(key))
    if isinstance(holder, list):
        return holder[int(key)]
    return holder.get(str(key))


def _put(holder: Holder, key: Key, value: Any) -> None:
    if isinstance(holder, msgspec.Struct):
        setattr(holder, str(key), value)
    elif isinstance(holder, list):
        holder[int(key)] = value
    else:
        holder[str(key)] = value


# ---------------------------------------------------------------------- bodies


def in_points(body: schemas.UpsertPoints) -> Documents:
    """The documents of an upsert: in `points[].vector` or in `batch.vectors` columns."""
    found = Documents()
    for point in body.points or ():
        found.point_vector(point, "vector")
    if body.batch is not None:
        found.columns(body.batch.vectors)
    return found


def in_vectors(body: schemas.UpdateVectors) -> Documents:
    found = Documents()
    for point in body.points:
        found.point_vector(point, "vector")
    return found


def in_batch(body: schemas.BatchUpdate) -> Documents:
    """The documents of `points/batch`: in its upserts and vector updates (raw objects)."""
    found = Documents()
    for item in body.operations:
        if not isinstance(item, dict) or len(item) != 1:
            continue  # the batch's own parsing says what is wrong
        kind, raw = next(iter(item.items()))
        if kind not in ("upsert", "update_vectors") or not isinstance(raw, dict):
            continue
        for point in raw.get("points") or ():
            if isinstance(point, dict):
                found.point_vector(point, "vector")
        batch = raw.get("batch")
        if isinstance(batch, dict):
            found.columns(batch.get("vectors"))
    return found


def in_query(body: schemas.Prefetch) -> Documents:
    """The documents of a universal query: its `query` and every prefetch level's."""
    found = Documents()
    found.query(body, "query")
    found.prefetch(body.prefetch)
    return found


async def embed_query(embedding: EmbeddingService, body: schemas.Prefetch) -> None:
    """Embed a query body's documents in place (nothing to do without any)."""
    found = in_query(body)
    if found:
        await found.embed(embedding)
