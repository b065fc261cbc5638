"""The text models this server embeds with, by name: what each makes and how to run it.

Both dialects look models up here. Upstash indexes name theirs at creation
(`embeddingModel`, `sparseEmbeddingModel`); Qdrant clients name one per `Document`. Names
are matched without regard to case, as Qdrant matches them (`qdrant/bm25`), and BM25 has
both dialects' names.

A model turns texts into vectors in two roles: as documents (what is stored) and as queries
(what is searched with). MiniLM embeds both alike; BM25 weighs a document's terms by
frequency and a query's terms by 1, the collection's IDF supplying the rest at search time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from app.embedding import bm25, minilm
from app.models import SparseVector

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BM25 = "BM25"
QDRANT_BM25 = "Qdrant/bm25"

Embedding = np.ndarray | SparseVector


class Kind(StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"


class UnknownModel(LookupError):
    """No model of that name; the message lists the ones there are."""


class BadOptions(ValueError):
    """Options a model does not take, or values it cannot use."""


class TextModel(Protocol):
    name: str
    kind: Kind
    dimension: int | None  # None: sparse

    def embed(self, texts: list[str], *, query: bool, options: Any = None) -> list[Embedding]:
        """One vector per text (CPU-bound: callers run it in the CPU pool)."""
        ...


@dataclass(frozen=True, slots=True)
class MiniLMModel:
    name: str = MINILM
    kind: Kind = Kind.DENSE
    dimension: int = minilm.DIM

    def embed(self, texts: list[str], *, query: bool, options: Any = None) -> list[Embedding]:
        """Unit-length float32 rows; documents and queries alike. `options` are ignored:
        the model has none that change its output."""
        return list(minilm.embed(texts))


# Qdrant's `Bm25Config` keys this server honours, as fastembed's `Bm25` arguments.
_BM25_NUMBERS = {"k": "k", "b": "b", "avg_len": "avg_len"}
# Keys accepted only at the value that is this implementation's behaviour.
_BM25_FIXED: dict[str, tuple[Any, ...]] = {
    "lowercase": (None, True),
    "ascii_folding": (None, False),
    "tokenizer": (None, "word"),
    "min_token_len": (None,),
}
_BM25_LANGUAGES = (None, "english", "en")


@dataclass(frozen=True, slots=True)
class Bm25Model:
    name: str = QDRANT_BM25
    kind: Kind = Kind.SPARSE
    dimension: None = None

    def embed(self, texts: list[str], *, query: bool, options: Any = None) -> list[Embedding]:
        weights = bm25_options(options)
        make = weights.query if query else weights.document
        return [SparseVector(*make(text)) for text in texts]


def bm25_options(options: Any) -> bm25.Bm25:
    """Qdrant's BM25 `options` (`k`, `b`, `avg_len`, `language`, `max_token_len`, and the
    others at their defaults) as the term weighting they select; BadOptions says why not."""
    if options is None:
        return bm25.DEFAULT
    if not isinstance(options, Mapping):
        raise BadOptions("BM25 options must be an object")
    chosen: dict[str, Any] = {}
    for key, value in options.items():
        if key in _BM25_NUMBERS:
            chosen[_BM25_NUMBERS[key]] = _number(key, value)
        elif key == "max_token_len":
            if value is not None:
                chosen["token_max_length"] = _positive_int(key, value)
        elif key == "language":
            if value not in _BM25_LANGUAGES:
                raise BadOptions(f"BM25 language {value!r} is not supported (english only)")
        elif key in _BM25_FIXED:
            if value not in _BM25_FIXED[key]:
                raise BadOptions(f"BM25 option {key}={value!r} is not supported by this server")
        else:
            known = ", ".join([*_BM25_NUMBERS, "language", "max_token_len", *_BM25_FIXED])
            raise BadOptions(f"Unknown BM25 option {key!r} (known: {known})")
    if chosen.get("avg_len", 1.0) <= 0:
        raise BadOptions("BM25 avg_len must be greater than 0")
    return bm25.Bm25(**chosen) if chosen else bm25.DEFAULT


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadOptions(f"BM25 option {key} must be a finite number")
    if value < 0:
        raise BadOptions(f"BM25 option {key} must not be negative")
    return float(value)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadOptions(f"BM25 option {key} must be a positive integer")
    return value


_MINILM = MiniLMModel()
_BM25 = Bm25Model()
_BY_NAME: dict[str, TextModel] = {
    MINILM.lower(): _MINILM,
    QDRANT_BM25.lower(): _BM25,
    BM25.lower(): _BM25,
}


def find(name: Any) -> TextModel:
    """The model called `name` (any case); UnknownModel names the ones there are."""
    model = _BY_NAME.get(name.lower()) if isinstance(name, str) else None
    if model is None:
        raise UnknownModel(
            f"Unknown embedding model {name!r}: this server has {MINILM} (dense, "
            f"{minilm.DIM} dimensions) and {QDRANT_BM25} (sparse, also called {BM25})"
        )
    return model
