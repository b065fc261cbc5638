"""Which parts of a payload and which vectors a read returns (`with_payload`, `with_vector`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PayloadSelector:
    """All, nothing, only `include` paths, or all but `exclude` paths (dot-separated)."""

    enabled: bool = False
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    def apply(self, payload: dict[str, Any] | None) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        payload = payload or {}
        if self.include is not None:
            selected: dict[str, Any] = {}
            for path in self.include:
                _copy_path(payload, selected, path.split("."))
            return selected
        if self.exclude is not None:
            return _without(payload, [path.split(".") for path in self.exclude])
        return payload


@dataclass(frozen=True, slots=True)
class VectorSelector:
    """No vectors, all of them, or only the named ones (`""` is the unnamed vector)."""

    enabled: bool = False
    names: tuple[str, ...] | None = None

    def wants(self, name: str) -> bool:
        return self.enabled and (self.names is None or name in self.names)


def _copy_path(source: Any, target: dict[str, Any], keys: list[str]) -> None:
    """Copy `source[keys...]` into `target`, keeping the nesting (arrays of objects too)."""
    if not isinstance(source, dict) or keys[0] not in source:
        return
    head, rest = keys[0], keys[1:]
    value = source[head]
    if not rest:
        target[head] = value
        return
    if isinstance(value, dict):
        child = target.setdefault(head, {})
        if isinstance(child, dict):
            _copy_path(value, child, rest)
    elif isinstance(value, list):
        items = []
        for element in value:
            picked: dict[str, Any] = {}
            _copy_path(element, picked, rest)
            if picked:
                items.append(picked)
        if items:
            target[head] = items


def _without(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_without(element, paths) for element in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, child in value.items():
        if [key] in paths:
            continue
        deeper = [path[1:] for path in paths if len(path) > 1 and path[0] == key]
        result[key] = _without(child, deeper) if deeper else child
    return result


def merge_at(payload: dict[str, Any], key: str | None, values: dict[str, Any]) -> dict[str, Any]:
    """Qdrant `set_payload`: merge `values` into the payload, or into the object at `key`.

    Missing or non-object levels along `key` are replaced by objects.
    """
    if not key:
        return {**payload, **values}
    head, _, rest = key.partition(".")
    child = payload.get(head)
    child = child if isinstance(child, dict) else {}
    return {**payload, head: merge_at(child, rest or None, values)}


def delete_paths(payload: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Qdrant `delete_payload`: remove each key (dot paths reach into nested objects)."""
    return _without(payload, [key.split(".") for key in keys])
