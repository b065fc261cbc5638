"""Large request bodies are decoded and validated in the CPU pool, in slices.

Litestar decodes a handler's `data` on the event loop before the handler runs. For a bulk
upsert of tens of megabytes that is a few hundred milliseconds in which the worker answers
nobody else. A route that takes large bodies declares `dto=deferred(Kind)` and
`data: Deferred[Kind]`: the OpenAPI document still shows `Kind`, but the handler receives the
bytes and calls `data.parsed(cpu, parse)`, which decodes them and runs `parse` (the
validation that turns a body into domain objects) inline for a small body and in the pool
for a large one.

Moving a decode to a pool thread is not enough by itself: msgspec decodes a document in one
call that holds the GIL throughout, so the event loop would wait just as long. A large body
is therefore decoded in slices (`decode_sliced`): its outline first, with every large object
member or array element kept as raw text, then each of those on its own. Between slices the
GIL passes to the loop; the longest single call is the outline scan, which skips the text
without building anything.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from litestar.dto import DTOData, MsgspecDTO

from app.errors import BadRequest, ValidationFailed
from app.services.cpu import CpuPool

T = TypeVar("T")
R = TypeVar("R")

NOT_A_JSON_NUMBER = "Number out of range"  # `1e999`: msgspec's words for no float at all
SLICE_BYTES = 256 * 1024  # text decoded in one call at most, unless it cannot be sliced


class Deferred(DTOData[T]):
    """A JSON body not decoded yet. It subclasses `DTOData` only so that Litestar accepts it
    as the type of a DTO's `data`; none of `DTOData`'s methods apply."""

    def __init__(self, raw: bytes, kind: type[T]) -> None:
        self.raw = raw
        self.kind = kind

    async def parsed(self, cpu: CpuPool, parse: Callable[[T], R]) -> R:
        """`parse(body)`, decoding included, in `cpu` when the body is large."""
        return await self.sized(cpu, lambda: parse(self.decoded()))

    async def sized(self, cpu: CpuPool, work: Callable[[], R]) -> R:
        """`work()`, whose cost grows with this body: inline when it is small, else in
        `cpu` (a later step of parsing it, say)."""
        if len(self.raw) <= SLICE_BYTES:
            return work()
        return await cpu.run(work)

    def decoded(self) -> T:
        return decode(self.raw, self.kind)


def decode(raw: bytes, kind: Any, *, strict: bool = False) -> Any:
    """The JSON body as `kind` (an empty body reads as `{}`), with Litestar's error statuses:
    400 for text that is not JSON, 422 for JSON of the wrong shape. Not `strict`, numbers
    and booleans may come as strings, as in the bodies Litestar decodes."""
    try:
        return decode_sliced(raw or b"{}", kind, strict)
    except msgspec.ValidationError as exc:
        if str(exc).startswith(NOT_A_JSON_NUMBER):  # as Litestar's untyped first pass says
            raise BadRequest(f"Format error in JSON body: {exc}") from None
        raise ValidationFailed(f"Validation error in JSON body: {exc}") from None
    except _MissingField as exc:
        raise ValidationFailed(f"Validation error in JSON body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"Format error in JSON body: {exc}") from None


_dtos: dict[type, type[MsgspecDTO[Any]]] = {}


def deferred(kind: type[T]) -> type[MsgspecDTO[T]]:
    """The DTO of a route whose body is `kind`, documented as such but left undecoded."""
    if kind not in _dtos:

        def decode_bytes(self: MsgspecDTO[T], value: bytes) -> Deferred[T]:
            return Deferred(value, kind)

        _dtos[kind] = type(
            f"Deferred{kind.__name__}", (MsgspecDTO[kind],), {"decode_bytes": decode_bytes}
        )
    return _dtos[kind]


class _MissingField(ValueError):
    pass


def decode_sliced(raw: bytes | msgspec.Raw, kind: Any, strict: bool = False) -> Any:
    """`msgspec.json.decode(raw, type=kind)`, in calls over at most `SLICE_BYTES` of text
    each where `kind` allows: an array of a list type element by element, an object of a
    Struct type member by member; any other large value in one call."""
    if len(raw) > SLICE_BYTES:
        options = [option for option in _union(kind) if option is not type(None)]
        first = _first_byte(raw)
        items = [get_args(o)[0] for o in options if get_origin(o) is list]
        if first == b"[" and items:
            elements = msgspec.json.decode(raw, type=list[msgspec.Raw])
            return [decode_sliced(element, items[0], strict) for element in elements]
        structs = [o for o in options if isinstance(o, type) and issubclass(o, msgspec.Struct)]
        if first == b"{" and structs:
            return _struct_sliced(raw, structs[0], strict)
    return msgspec.json.decode(raw, type=kind, strict=strict)


def _first_byte(raw: bytes | msgspec.Raw) -> bytes:
    """The first byte of a JSON text that is not whitespace."""
    view = memoryview(raw)
    at = 0
    while at < len(view) and view[at] in b" \t\r\n":
        at += 1
    return bytes(view[at : at + 1])


def _union(kind: Any) -> tuple[Any, ...]:
    return get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)


def _struct_sliced(raw: bytes | msgspec.Raw, struct: type[msgspec.Struct], strict: bool) -> Any:
    members = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    fields = _fields_of(struct)
    values = {
        fields[key][0]: decode_sliced(member, fields[key][1], strict)
        for key, member in members.items()
        if key in fields
    }
    try:
        return struct(**values)
    except TypeError as exc:  # a required member is missing
        raise _MissingField(f"{exc} in `{struct.__name__}`") from None


@cache
def _fields_of(struct: type[msgspec.Struct]) -> dict[str, tuple[str, Any]]:
    """Wire name -> (attribute name, type) of a Struct's fields."""
    hints = get_type_hints(struct)
    return {
        wire: (name, hints[name])
        for name, wire in zip(
            struct.__struct_fields__, struct.__struct_encode_fields__, strict=True
        )
    }
