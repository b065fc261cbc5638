"""Grouped search (Qdrant `query/groups`, `search/groups`, `recommend/groups`).

The rules are Qdrant's, as qdrant-client local mode implements them: hits are taken best
first; each keyword or integer value at `group_by` (each element of an array) is a group; a
point whose values include anything else (a float, a bool, null, an object) joins no group;
groups come in the order of their best hit, each keeps its `group_size` best hits, and the
first `limit` groups are the answer.

Rather than ranking the whole collection, the search is run for a prefix of the ranking,
widened until the first `limit` groups are full or the ranking is exhausted: a prefix
already fixes the order of the groups it contains and the best hits of each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from app import limits
from app.errors import BadRequest
from app.filters import ast, parse_qdrant_filter
from app.filters.qdrant import parse_key
from app.filters.semantics import tested_values
from app.models import point_id_key
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import PointService, Record, check_count
from app.services.search import SearchRequest, SearchService

GroupId = int | str
FIRST_FETCH = 64
GROWTH = 4


@dataclass(frozen=True, slots=True)
class Lookup:
    """`with_lookup`: the collection whose point with the group's id joins each group."""

    collection: str
    payload: PayloadSelector = field(default_factory=lambda: PayloadSelector(enabled=True))
    vectors: VectorSelector = field(default_factory=VectorSelector)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    group_by: str
    group_size: int = 3
    limit: int = 10
    lookup: Lookup | None = None


@dataclass(slots=True)
class Group:
    id: GroupId
    hits: list[Record]
    lookup: Record | None = None


def group_ids(payload: Any, path: ast.Path) -> list[GroupId] | None:
    """The groups a payload belongs to, in payload order; None when it can join none."""
    values = tested_values(payload, path)
    if any(type(value) not in (int, str) for value in values):
        return None  # Qdrant drops a point with any value that cannot be a group id
    return list(dict.fromkeys(values))


def collect(records: list[Record], path: ast.Path, size: int) -> dict[GroupId, list[Record]]:
    """Hits in ranking order into groups (insertion order = order of each group's best hit)."""
    groups: dict[GroupId, list[Record]] = {}
    for record in records:
        for group in group_ids(record.payload, path) or ():
            hits = groups.setdefault(group, [])
            if len(hits) < size:
                hits.append(record)
    return groups


class GroupService:
    def __init__(self, search: SearchService, points: PointService) -> None:
        self.search = search
        self.points = points

    async def groups(self, name: str, request: SearchRequest, spec: GroupSpec) -> list[Group]:
        check_count("group_size", spec.group_size, minimum=1)
        check_count("limit", spec.limit, minimum=1)
        limits.check_result_size("limit times group_size", spec.limit * spec.group_size)
        path = parse_key(spec.group_by, "group_by")
        if spec.lookup is not None:
            self.points.catalog.get(spec.lookup.collection)  # 404 before searching
        fetch = max(FIRST_FETCH, 2 * spec.limit * spec.group_size)
        while True:
            probe = dataclasses.replace(
                request,
                limit=fetch,
                offset=0,
                payload=PayloadSelector(enabled=True),
                filter=_with_group_key(request.filter, spec.group_by),
            )
            hits = (await self.search.search(name, probe)).points
            groups = collect(hits, path, spec.group_size)
            chosen = list(groups.items())[: spec.limit]
            full = len(chosen) == spec.limit and all(len(h) == spec.group_size for _, h in chosen)
            if full or len(hits) < fetch:
                break
            fetch *= GROWTH
        result = [Group(gid, hits) for gid, hits in chosen]
        for group in result:
            for hit in group.hits:
                hit.payload = request.payload.apply(hit.payload)
        if spec.lookup is not None:
            await self._lookup(result, spec.lookup)
        return result

    async def _lookup(self, groups: list[Group], lookup: Lookup) -> None:
        """Each group's lookup record: the point of `lookup.collection` with the group's id."""
        valid = [g.id for g in groups if _is_point_id(g.id)]
        records = await self.points.retrieve(
            lookup.collection, valid, lookup.payload, lookup.vectors
        )
        by_id = {point_id_key(r.id)[0]: r for r in records}
        for group in groups:
            if _is_point_id(group.id):
                group.lookup = by_id.get(point_id_key(group.id)[0])


def _is_point_id(value: GroupId) -> bool:
    try:
        point_id_key(value)
    except ValueError:
        return False
    return True


def _with_group_key(node: Any, group_by: str) -> Any:
    """The request's filter, narrowed to points with a value at `group_by`.

    Points where `is_empty` holds can join no group, so leaving them out changes no answer
    and spares ranking them (most of the collection when the key is rare).
    """
    has_key = parse_qdrant_filter({"must_not": [{"is_empty": {"key": group_by}}]})
    if has_key is None:
        raise BadRequest("Wrong input: group_by must be a payload key")
    return has_key if node is None else ast.And((node, has_key))
