"""Filter limits and shapes that used to reach the back ends whole: refused before any
recursion can overflow the stack, counted before the work grows, merged where one test does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import limits
from app.errors import BadRequest
from app.filters import filter_cost, matches, parse_qdrant_filter, parse_upstash_filter
from app.filters.ast import AnyOf, Equals, Or, Typing
from app.filters.evaluate import Point


@pytest.fixture
def small_limits() -> Iterator[None]:
    limits.configure(limits.Limits(filter_depth=4, filter_conditions=5))
    yield
    limits.configure(limits.Limits())


def deep_json(depth: int) -> dict:
    node: dict = {"key": "a", "match": {"value": 1}}
    for _ in range(depth):
        node = {"must": [node]}
    return node


def test_qdrant_depth_far_past_the_stack_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="WAYPOINT_MAX_FILTER_DEPTH"):
        parse_qdrant_filter(deep_json(100_000))


def test_qdrant_nested_conditions_count_as_depth(small_limits: None) -> None:
    inner = {"must": [{"key": "x", "match": {"value": 1}}]}
    for _ in range(4):
        inner = {"must": [{"nested": {"key": "n", "filter": inner}}]}
    with pytest.raises(BadRequest, match="WAYPOINT_MAX_FILTER_DEPTH"):
        parse_qdrant_filter(inner)


def test_qdrant_conditions_are_counted(small_limits: None) -> None:
    five = [{"key": f"k{i}", "match": {"value": i}} for i in range(5)]
    assert parse_qdrant_filter({"must": five}) is not None
    with pytest.raises(BadRequest, match="WAYPOINT_MAX_FILTER_CONDITIONS"):
        parse_qdrant_filter({"must": five, "must_not": [five[0]]})


def test_upstash_parentheses_far_past_the_stack_are_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="WAYPOINT_MAX_FILTER_DEPTH"):
        parse_upstash_filter("(" * 100_000 + "a = 1" + ")" * 100_000)


def test_upstash_conditions_are_counted(small_limits: None) -> None:
    assert parse_upstash_filter(" OR ".join(f"k{i} = {i}" for i in range(5))) is not None
    with pytest.raises(BadRequest, match="WAYPOINT_MAX_FILTER_CONDITIONS"):
        parse_upstash_filter(" AND ".join(f"k{i} = {i}" for i in range(6)))


@pytest.mark.parametrize("literal", ["9" * 4301, "9223372036854775808", "-9223372036854775809"])
def test_upstash_integers_beyond_64_bits_are_a_bad_request(literal: str) -> None:
    with pytest.raises(BadRequest, match="out of the 64-bit range"):
        parse_upstash_filter(f"a = {literal}")


def test_upstash_huge_array_index_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="out of range"):
        parse_upstash_filter(f"a[#-{'9' * 5000}] = 1")


def test_equalities_on_one_path_merge_into_one_test() -> None:
    node = parse_upstash_filter("a = 1 OR b = 'x' OR a = 2 OR a IN (3, 1) OR a = 'z'")
    assert isinstance(node, Or)
    merged, other = node.children
    assert isinstance(merged, AnyOf)
    assert merged.values == (1, 2, 3, "z")
    assert merged.typing is Typing.LOOSE
    assert other == Equals(other.path, "x", Typing.LOOSE)
    for a, expected in ((1, True), (3, True), ("z", True), (4, False), (True, True)):
        assert matches(node, Point(1, {"a": a}, frozenset())) is expected, a


def test_qdrant_should_of_values_merges_and_keeps_strict_typing() -> None:
    should = [{"key": "a", "match": {"value": v}} for v in (1, "1", True, 1)]
    node = parse_qdrant_filter({"should": should})
    assert isinstance(node, AnyOf)
    assert node.values == (1, "1", True)
    assert matches(node, Point(1, {"a": 1}, frozenset()))
    assert not matches(node, Point(1, {"a": 1.0}, frozenset()))
    assert not matches(node, Point(1, {"a": "true"}, frozenset()))


def test_a_filter_costs_a_test_per_condition_word_and_many_values() -> None:
    node = parse_qdrant_filter(
        {"must": [{"key": "t", "match": {"text": "one two three"}}, {"has_id": [1, 2, 3]}]}
    )
    assert filter_cost(node, 100) == 4
    values = parse_qdrant_filter({"must": [{"key": "a", "match": {"any": list(range(1000))}}]})
    assert filter_cost(values, 100) == 1 + 1000 // 256
    assert filter_cost(node, 1) >= 1  # stops once it has enough
