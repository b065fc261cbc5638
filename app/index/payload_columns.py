"""In-memory columns of declared payload fields: filters over them answer without SQL.

A column groups the points of one namespace by the value they hold at a declared key path
(`city`, `meta.rank`), one group per distinct value, missing included, with values kept
type-exact (1, 1.0 and true are three groups). A condition on that path (or below it) is
decided once per group, by the same compiled predicate the rest of the service uses, so
the answer means exactly what the filter means; the matches are the points of the groups
that pass. Equality conditions go straight to the groups holding the value (an element
index), so they cost a lookup however many distinct values the field has.

A filter is answered here only if every condition in it is (`matches()` returns None
otherwise and the caller asks PostgreSQL). Liveness is not this module's business: matches
may name points that no longer exist, and are intersected with a segment's live rows.

Every entry remembers the seq of the write that set it, so writes may be applied in any
order (a worker's own writes, the change feed, a column being filled from a snapshot) and
the newest always wins.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from app.filters import Point, compile_predicate
from app.filters.ast import (
    And,
    AnyOf,
    Equals,
    HasId,
    Key,
    MinShould,
    Nested,
    Node,
    Not,
    Or,
    Path,
    Typing,
)
from app.models import PointId, plain_keys

MAX_SCANNED_VALUES = 4096  # distinct values a non-equality condition may visit one by one
_MISSING = object()
_MISSING_KEY = ""  # no JSON text is empty


@dataclass(frozen=True, slots=True)
class Matches:
    """Points a filter matches: `ids`, or with `negated` every point except `ids`."""

    ids: AbstractSet[PointId]
    negated: bool = False

    def __and__(self, other: Matches) -> Matches:
        if not self.negated and not other.negated:
            return Matches(self.ids & other.ids)
        if self.negated and other.negated:
            return Matches(self.ids | other.ids, True)
        kept, dropped = (other, self) if self.negated else (self, other)
        return Matches(kept.ids - dropped.ids)

    def __or__(self, other: Matches) -> Matches:
        return ~(~self & ~other)

    def __invert__(self) -> Matches:
        return Matches(self.ids, not self.negated)


EVERYTHING = Matches(frozenset(), negated=True)
NOTHING = Matches(frozenset())


class _Group:
    __slots__ = ("ids", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.ids: set[PointId] = set()


class FieldColumn:
    """The points of a namespace grouped by their value at one plain key path."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._groups: dict[str, _Group] = {}
        self._group_of: dict[PointId, str] = {}
        self._by_element: defaultdict[tuple[str, Any], set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._groups)

    def put(self, point_id: PointId, payload: Any) -> None:
        self.remove(point_id)
        value = self._value_in(payload)
        key = _MISSING_KEY if value is _MISSING else json.dumps(value, sort_keys=True)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(value)
            for element in _elements(value):
                self._by_element[element].add(key)
        group.ids.add(point_id)
        self._group_of[point_id] = key

    def remove(self, point_id: PointId) -> None:
        key = self._group_of.pop(point_id, None)
        if key is None:
            return
        group = self._groups[key]
        group.ids.discard(point_id)
        if group.ids:
            return
        del self._groups[key]
        for element in _elements(group.value):
            holders = self._by_element[element]
            holders.discard(key)
            if not holders:
                del self._by_element[element]

    def matches(self, node: Node) -> Matches | None:
        """The points for which `node` (a condition on this column's path) holds."""
        at_path = len(node.path.steps) == len(self.keys)  # not below it: elements are ours
        if at_path and isinstance(node, Equals | AnyOf):
            literals = (node.value,) if isinstance(node, Equals) else node.values
            loose = node.typing is Typing.LOOSE
            elements = {e for literal in literals for e in _lookups(literal, loose)}
            keys = {key for e in elements for key in self._by_element.get(e, ())}
            groups = [self._groups[key] for key in keys]
        elif len(self._groups) <= MAX_SCANNED_VALUES:
            groups = list(self._groups.values())
        else:
            return None
        holds = compile_predicate(node)
        passing = [
            group.ids
            for group in groups
            if holds(Point(None, self._payload_of(group.value), frozenset()))
        ]
        if len(passing) == 1:
            return Matches(passing[0])  # live: copied once, when the whole filter is answered
        return Matches(frozenset().union(*passing))

    def _value_in(self, payload: Any) -> Any:
        for name in self.keys:
            if not isinstance(payload, dict) or name not in payload:
                return _MISSING
            payload = payload[name]
        return payload

    def _payload_of(self, value: Any) -> dict[str, Any]:
        """The smallest payload holding `value` at this column's path."""
        if value is _MISSING:
            return {}
        for name in reversed(self.keys):
            value = {name: value}
        return value


class PayloadColumns:
    """The columns of one namespace, one per declared field with a plain key path.

    `ready` is False while the columns are being filled: until then they answer nothing.
    """

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = frozenset(fields)
        self.ready = False
        self._columns = {
            keys: FieldColumn(keys) for field in self.fields if (keys := plain_keys(field))
        }
        self._seqs: dict[PointId, int] = {}  # the newest write seen for each point
        self._lock = threading.Lock()

    def put(self, points: Iterable[tuple[PointId, int, Any]]) -> None:
        """Record (id, seq, payload) writes; a write older than what is held is ignored."""
        with self._lock:
            for point_id, seq, payload in points:
                if self._is_newer(point_id, seq):
                    for column in self._columns.values():
                        column.put(point_id, payload)

    def remove(self, points: Iterable[tuple[PointId, int]]) -> None:
        """Forget deleted (id, seq) points, unless written again after that seq."""
        with self._lock:
            for point_id, seq in points:
                if self._is_newer(point_id, seq):
                    for column in self._columns.values():
                        column.remove(point_id)

    def _is_newer(self, point_id: PointId, seq: int) -> bool:
        if seq <= self._seqs.get(point_id, -1):
            return False
        self._seqs[point_id] = seq
        return True

    def matches(self, node: Node) -> Matches | None:
        """What `node` matches, or None when some condition in it has no column."""
        if not self.ready:
            return None
        with self._lock:
            found = self._matches(node)
            # parts may be a group's own set, which writes change: hand out a copy
            return None if found is None else Matches(frozenset(found.ids), found.negated)

    def _matches(self, node: Node) -> Matches | None:
        match node:
            case And(children):
                return _combine(map(self._matches, children), EVERYTHING, Matches.__and__)
            case Or(children):
                return _combine(map(self._matches, children), NOTHING, Matches.__or__)
            case Not(child):
                inner = self._matches(child)
                return None if inner is None else ~inner
            case MinShould(children, min_count):
                return self._min_should(children, min_count)
            case HasId(ids):
                return Matches(frozenset(ids))
            case Nested():
                return None  # its inner filter may test ids and vectors, which columns lack
        path = getattr(node, "path", None)
        column = self._column_for(path) if isinstance(path, Path) else None
        return None if column is None else column.matches(node)

    def _min_should(self, children: tuple[Node, ...], min_count: int) -> Matches | None:
        if min_count <= 0:
            return EVERYTHING
        found = [self._matches(child) for child in children]
        if any(m is None or m.negated for m in found):
            return None
        counts: defaultdict[PointId, int] = defaultdict(int)
        for m in found:
            for point_id in m.ids:  # type: ignore[union-attr]
                counts[point_id] += 1
        return Matches(frozenset(pid for pid, n in counts.items() if n >= min_count))

    def _column_for(self, path: Path) -> FieldColumn | None:
        """The column whose path is the longest plain-key prefix of `path`."""
        for length in range(len(path.steps), 0, -1):
            head = path.steps[:length]
            if all(isinstance(step, Key) for step in head):
                column = self._columns.get(tuple(step.name for step in head))  # type: ignore[union-attr]
                if column is not None:
                    return column
        return None


def _combine(parts: Iterator[Matches | None], empty: Matches, op: Any) -> Matches | None:
    """Fold `op` over the parts (`empty` for none); None as soon as one part is None."""
    result = None
    for part in parts:
        if part is None:
            return None
        result = part if result is None else op(result, part)
    return empty if result is None else result


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"  # 1 and 1.0 share a bucket; the predicate tells them apart
    if isinstance(value, str):
        return "s"
    return None


def _elements(value: Any) -> Iterator[tuple[str, Any]]:
    """The scalars an equality condition can match in `value` (itself, or its items)."""
    for item in value if isinstance(value, list) else (value,):
        kind = _kind(item)
        if kind is not None:
            yield kind, item


def _lookups(literal: Any, loose: bool) -> Iterator[tuple[str, Any]]:
    """Element keys that may equal `literal`: Upstash also equates true/false and 1/0."""
    kind = _kind(literal)
    if kind is None:
        return
    yield kind, literal
    if loose and kind == "b":
        yield "n", int(literal)
    if loose and kind == "n" and literal in (0, 1):
        yield "b", bool(literal)
