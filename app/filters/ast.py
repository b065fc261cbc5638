"""One filter AST for the Qdrant and Upstash dialects.

Both parsers produce these nodes and the three back ends (reference evaluator, in-memory
predicate, SQL) consume them, so a rule is written once per back end instead of once per
dialect and back end. Where the dialects mean the same thing the node is shared (`Range` is
Qdrant `range` and Upstash `<`, `<=`, `>`, `>=`); where they differ the node says which rule
applies:

- `Path.flatten`: Qdrant tests each element of an array found at the end of a key path (and
  `a[]` walks into arrays on the way); Upstash tests the value at the path as it is.
- `Equals.typing` / `AnyOf.typing`: Qdrant is type-strict (`1 ≠ 1.0 ≠ true`, and a float payload
  value never equals anything); Upstash compares numbers by value and takes booleans as 1 and 0.

A field condition matches when *some* value found at its path passes the test; a path that
finds nothing (missing key, wrong type on the way, index out of range) fails every value test.
`TRUE` and `FALSE` are the empty `And` and `Or`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

Scalar = str | int | float | bool
PointId = int | str


# --- key paths ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """`.name`: a member of an object."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """`[3]`: one array element; negative positions count from the end (Upstash `[#-1]`)."""

    position: int


@dataclass(frozen=True, slots=True)
class Each:
    """`[]`: every element of an array (Qdrant)."""


Step = Key | Index | Each


@dataclass(frozen=True, slots=True)
class Path:
    """Where a condition looks in a payload, and whether a final array is tested elementwise."""

    steps: tuple[Step, ...]
    flatten: bool

    def __str__(self) -> str:
        text = ""
        for step in self.steps:
            match step:
                case Key(name):
                    text += f".{name}" if text else name
                case Index(position) if position < 0:
                    text += f"[#{position}]"
                case Index(position):
                    text += f"[{position}]"
                case Each():
                    text += "[]"
        return text


# --- boolean structure -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class MinShould:
    """At least `min_count` of `children` hold (Qdrant `min_should`)."""

    children: tuple[Node, ...]
    min_count: int


TRUE = And(())
FALSE = Or(())


# --- value tests -------------------------------------------------------------------------------


class Typing(Enum):
    """Which equality a comparison uses; see the module docstring."""

    STRICT = "strict"  # Qdrant
    LOOSE = "loose"  # Upstash


class TextMode(Enum):
    ALL = "text"  # every query token is a document token
    ANY = "text_any"  # some query token is a document token
    PHRASE = "phrase"  # the query tokens appear consecutively


@dataclass(frozen=True, slots=True)
class Equals:
    """Qdrant `match.value`, Upstash `=`."""

    path: Path
    value: Scalar
    typing: Typing


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Qdrant `match.any`, Upstash `IN`."""

    path: Path
    values: tuple[Scalar, ...]
    typing: Typing


@dataclass(frozen=True, slots=True)
class Except:
    """Qdrant `match.except`: some non-null value equal (strictly) to none of `values`."""

    path: Path
    values: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Differs:
    """Upstash `!=`: the value has the literal's type (booleans count as numbers) and differs.

    Not the negation of `Equals`: a missing key or another type fails both.
    """

    path: Path
    value: Scalar


@dataclass(frozen=True, slots=True)
class Range:
    """Qdrant numeric `range`, Upstash `<`, `<=`, `>`, `>=`: numbers only, never booleans."""

    path: Path
    gt: int | float | None = None
    gte: int | float | None = None
    lt: int | float | None = None
    lte: int | float | None = None


@dataclass(frozen=True, slots=True)
class DatetimeRange:
    """Qdrant datetime `range`: string values that parse as datetimes; bounds are aware (UTC)."""

    path: Path
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """Qdrant `match.text` / `text_any` / `phrase` on an unindexed field (word tokens)."""

    path: Path
    query: str
    mode: TextMode


@dataclass(frozen=True, slots=True)
class Prefix:
    """Qdrant `match.prefix`: a string value starting with `prefix` (case-sensitive)."""

    path: Path
    prefix: str


@dataclass(frozen=True, slots=True)
class Substring:
    """Qdrant `match.substring`: a string value containing `substring` (case-sensitive)."""

    path: Path
    substring: str


@dataclass(frozen=True, slots=True)
class Glob:
    """Upstash `GLOB` / `NOT GLOB`: a string value that does (not) match the UNIX glob."""

    path: Path
    pattern: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Contains:
    """Upstash `CONTAINS` / `NOT CONTAINS`: an array value that does (not) hold the literal."""

    path: Path
    value: Scalar
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Exists:
    """Upstash `HAS FIELD`: the path leads somewhere, even to a null."""

    path: Path


@dataclass(frozen=True, slots=True)
class ValuesCount:
    """Qdrant `values_count`: some value's count (array length, null 0, else 1) is in bounds."""

    path: Path
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


@dataclass(frozen=True, slots=True)
class IsEmpty:
    """Qdrant `is_empty`: the key is missing, or every value is null or `[]`."""

    path: Path


@dataclass(frozen=True, slots=True)
class IsNull:
    """Qdrant `is_null`: some value is null, or an array holding a null."""

    path: Path


@dataclass(frozen=True, slots=True)
class HasId:
    """Qdrant `has_id`; ids are wire values with UUIDs in canonical (lowercase) form."""

    ids: frozenset[PointId]


@dataclass(frozen=True, slots=True)
class HasVector:
    """Qdrant `has_vector`; the unnamed vector is `""`."""

    name: str


@dataclass(frozen=True, slots=True)
class Nested:
    """Qdrant `nested`: `filter` holds for one object element of an array at `path`.

    Inside, `has_id` and `has_vector` never match: an element is not a point.
    """

    path: Path
    filter: Node


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class GeoBoundingBox:
    path: Path
    top_left: GeoPoint
    bottom_right: GeoPoint


@dataclass(frozen=True, slots=True)
class GeoRadius:
    """Within `radius` metres of `center` (haversine on the mean earth radius)."""

    path: Path
    center: GeoPoint
    radius: float


@dataclass(frozen=True, slots=True)
class GeoPolygon:
    """Inside `exterior` and outside every ring of `interiors`; boundaries are outside."""

    path: Path
    exterior: tuple[GeoPoint, ...]
    interiors: tuple[tuple[GeoPoint, ...], ...] = ()


ValueTest = (
    Equals
    | AnyOf
    | Except
    | Differs
    | Range
    | DatetimeRange
    | Text
    | Prefix
    | Substring
    | Glob
    | Contains
    | GeoBoundingBox
    | GeoRadius
    | GeoPolygon
)
"""Leaves that hold when some value at their path passes a test of that one value."""

Node = (
    And
    | Or
    | Not
    | MinShould
    | ValueTest
    | Exists
    | ValuesCount
    | IsEmpty
    | IsNull
    | HasId
    | HasVector
    | Nested
)


def either(children: list[Node]) -> Node:
    """`Or(children)`, with the equality tests on one path merged into one `AnyOf`.

    `a = 1 OR a = 2 OR ...` is how a filter lists allowed values in Upstash, and many Qdrant
    clients send `should` lists of `match.value`; as one `AnyOf` it costs every back end one
    test instead of one per value. A single child is returned as it is.
    """
    merged: dict[tuple[Path, Typing], list[Scalar]] = {}
    kept: list[Node | tuple[Path, Typing]] = []
    for child in children:
        if isinstance(child, Equals | AnyOf):
            key = (child.path, child.typing)
            if key not in merged:
                merged[key] = []
                kept.append(key)
            merged[key].extend((child.value,) if isinstance(child, Equals) else child.values)
        else:
            kept.append(child)
    nodes = [_equality(*item, merged[item]) if isinstance(item, tuple) else item for item in kept]
    return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))


def _equality(path: Path, typing: Typing, values: list[Scalar]) -> Node:
    distinct = tuple(dict.fromkeys((type(v), v) for v in values))
    if len(distinct) == 1:
        return Equals(path, values[0], typing)
    return AnyOf(path, tuple(v for _, v in distinct), typing)


VALUES_PER_TEST = 256  # values of a list (`any`, `except`, `has_id`) that cost as one test


def filter_cost(node: Node, enough: int) -> int:
    """About how many tests a filter makes of each point, counted until `enough` without
    recursion: a condition each, a full-text match one per word, a list of values one per
    `VALUES_PER_TEST` values besides."""
    count = 0
    stack = [node]
    while stack and count < enough:
        item = stack.pop()
        match item:
            case And(children) | Or(children) | MinShould(children, _):
                stack.extend(children)
            case Not(child):
                stack.append(child)
            case Nested(_, sub_filter):
                count += 1
                stack.append(sub_filter)
            case Text(_, query, _):
                count += max(1, len(query.split()))
            case AnyOf(_, values) | Except(_, values) | HasId(values):
                count += 1 + len(values) // VALUES_PER_TEST
            case _:
                count += 1
    return count


def both(first: Node | None, second: Node | None) -> Node | None:
    """The conjunction of two optional filters (None: no filter)."""
    if first is None or second is None:
        return second if first is None else first
    return And((first, second))
