"""In-memory payload columns answer exactly what the reference evaluator answers.

Property test over random payloads and random filters of both dialects: whenever the
columns answer (every condition on a declared field), the answer equals `matches()`; they
keep doing so through overwrites, deletes and writes applied out of order.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from app.filters import Node, Point, matches, parse_qdrant_filter
from app.index.payload_columns import MAX_SCANNED_VALUES, Matches, PayloadColumns
from app.models import plain_keys
from tests import test_filters_strategies as gen
from tests.test_filters_agree import random_filters, random_points

FIELDS = [*dict.fromkeys(gen.TOP_KEYS), "obj.tags", "obj.a", "obj.n"]


def resolved(found: Matches, ids: set[Any]) -> set[Any]:
    return ids - found.ids if found.negated else ids & found.ids


def check(columns: PayloadColumns, points: list[Point], node: Node) -> bool:
    """True when the columns answered; fails when they answered wrongly."""
    found = columns.matches(node)
    if found is None:
        return False
    expected = {p.id for p in points if matches(node, p)}
    assert resolved(found, {p.id for p in points}) == expected, node
    return True


def agree_on_random_filters(r: random.Random) -> tuple[list[Point], PayloadColumns]:
    """Random points in filled columns, checked against random filters."""
    points = random_points(r)
    columns = PayloadColumns(FIELDS)
    columns.put((p.id, 1, p.payload) for p in points)
    columns.ready = True
    for node in random_filters(r):
        check(columns, points, node)
    return points, columns


# no shrinking: the failure message names the filter, and shrinking these can take minutes
@settings(max_examples=150, deadline=None, database=None, phases=[Phase.explicit, Phase.generate])
@given(st.randoms(use_true_random=False))
def test_columns_agree_with_the_reference(r: random.Random) -> None:
    points, columns = agree_on_random_filters(r)
    # rewrite some payloads and delete some points; an older write arriving late is ignored
    rewritten = [Point(p.id, gen.payload(r), p.vector_names) for p in points[::2]]
    columns.put((p.id, 3, p.payload) for p in rewritten)
    columns.put((p.id, 2, {"a": "stale"}) for p in rewritten)
    deleted = {p.id for p in points[1::3]}
    columns.remove((pid, 4) for pid in deleted)
    current = {p.id: p for p in [*points, *rewritten] if p.id not in deleted}
    for node in random_filters(r):
        check(columns, list(current.values()), node)


def test_most_filters_on_declared_fields_are_answered() -> None:
    r = random.Random(7)
    answered = total = 0
    for _ in range(200):
        points = random_points(r)
        columns = PayloadColumns(FIELDS)
        columns.put((p.id, 1, p.payload) for p in points)
        columns.ready = True
        for node in random_filters(r):
            total += 1
            answered += check(columns, points, node)
    assert answered > total * 0.5, (answered, total)


def test_columns_answer_nothing_until_filled_or_without_a_column() -> None:
    columns = PayloadColumns(["city"])
    columns.put([(1, 1, {"city": "Paris"})])
    city = parse_qdrant_filter({"must": [{"key": "city", "match": {"value": "Paris"}}]})
    assert columns.matches(city) is None  # still filling
    columns.ready = True
    assert columns.matches(city) == Matches(frozenset({1}))
    other = parse_qdrant_filter({"must": [{"key": "country", "match": {"value": "FR"}}]})
    assert columns.matches(other) is None
    with_vector = parse_qdrant_filter({"must": [{"has_vector": "image"}]})
    assert columns.matches(with_vector) is None


def test_equality_is_a_lookup_even_on_high_cardinality_fields() -> None:
    columns = PayloadColumns(["price", "sku"])
    count = MAX_SCANNED_VALUES + 10
    columns.put((i, 1, {"price": i * 0.5, "sku": f"s{i}"}) for i in range(count))
    columns.ready = True
    sku = parse_qdrant_filter({"must": [{"key": "sku", "match": {"any": ["s3", "s5", "x"]}}]})
    assert columns.matches(sku) == Matches(frozenset({3, 5}))
    # a range over more distinct values than a scan may visit goes to PostgreSQL
    price = parse_qdrant_filter({"must": [{"key": "price", "range": {"lt": 2}}]})
    assert columns.matches(price) is None


def test_type_exact_groups() -> None:
    columns = PayloadColumns(["v"])
    columns.put([(1, 1, {"v": 1}), (2, 1, {"v": 1.0}), (3, 1, {"v": True}), (4, 1, {"v": [1]})])
    columns.ready = True
    one = parse_qdrant_filter({"must": [{"key": "v", "match": {"value": 1}}]})
    assert columns.matches(one) == Matches(frozenset({1, 4}))  # Qdrant: ints only, arrays flat
    assert columns.matches(parse_qdrant_filter({"must": [{"key": "v", "range": {"gte": 1}}]})) == (
        Matches(frozenset({1, 2, 4}))
    )


def test_plain_keys() -> None:
    assert plain_keys("a.b") == ("a", "b")
    assert plain_keys("a[].b") is None
    assert plain_keys("a..b") is None
    assert plain_keys("") is None


def test_upstash_equality_is_loose() -> None:
    """Upstash compares numbers by value and booleans as 1 and 0 (as the reference does)."""
    from app.filters import parse_upstash_filter

    stored = [(1, {"v": 1}), (2, {"v": 1.0}), (3, {"v": True}), (4, {"v": 0}), (5, {"v": "1"})]
    points = [Point(pid, payload, frozenset()) for pid, payload in stored]
    columns = PayloadColumns(["v"])
    columns.put((pid, 1, payload) for pid, payload in stored)
    columns.ready = True
    for text in ["v = 1", "v = true", "v = 1.0", "v IN (0, 2)", "v = false", "v = '1'"]:
        assert check(columns, points, parse_upstash_filter(text)), text


def test_equality_below_a_column_path_is_decided_per_value() -> None:
    """A column on `arr` answers `arr[].a = 1` too; the element index only knows the
    values at `arr` itself, so it must not be used for paths below it."""
    points = [
        Point(1, {"arr": [{"a": 1}, {"a": 2}]}, frozenset()),
        Point(2, {"arr": []}, frozenset()),
    ]
    columns = PayloadColumns(["arr"])
    columns.put((p.id, 1, p.payload) for p in points)
    columns.ready = True
    for spec in [
        {"must": [{"key": "arr[].a", "match": {"value": 1}}]},
        {"must": [{"key": "arr[].a", "match": {"any": [2, 3]}}]},
        {"must_not": [{"key": "arr[].a", "match": {"value": 1}}]},
    ]:
        assert check(columns, points, parse_qdrant_filter(spec)), spec


def test_columns_agree_on_many_fixed_seeds() -> None:
    """The property above over 2000 fixed seeds: a cheap, reproducible sweep."""
    for seed in range(2000):
        agree_on_random_filters(random.Random(seed))
