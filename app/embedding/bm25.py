"""BM25 sparse vectors exactly as fastembed's `Qdrant/bm25` model makes them.

Why: qdrant-client users embed text with fastembed (`SparseTextEmbedding("Qdrant/bm25")`)
and search collections whose sparse vectors use `modifier: "idf"`. For server-side
embedding to be interchangeable with theirs, a word must land on the same dimension with
the same value. The IDF half of BM25 is applied at query time by the sparse index
(app/index/sparse.py); this module produces only the term-frequency half.

Definition followed: fastembed 0.9.1, `fastembed/sparse/bm25.py` (class `Bm25`) with
`fastembed/sparse/utils/tokenizer.py` (`SimpleTokenizer`) and
`fastembed/common/utils.py` (`remove_non_alphanumeric`, `get_all_punctuation`):

1. `re.sub(r"[^\\w\\s]", " ", text)`, then lowercase, `re.sub(r"[^\\w]", " ", ...)` and
   split on whitespace (so "don't" gives "don" and "t"; "_" and digits are word characters).
2. Per token, in order: drop a one-character Unicode punctuation token (category P*, in
   practice "_"); drop it if in the stop words; drop it if longer than `token_max_length`
   (40) characters; stem it with the Snowball stemmer (`py_rust_stemmers`); drop an empty
   stem. With `disable_stemmer=True` there is no stemming *and* no stop words.
3. Dimension of a stem: `abs(mmh3.hash(stem))` (MurmurHash3 x86 32-bit, seed 0, UTF-8,
   read as signed, absolute value), so 0 <= id <= 2**31.
4. Document: with tf the stem's count and |d| the number of kept tokens, value
   `tf * (k + 1) / (tf + k * (1 - b + b * |d| / avg_len))`, k=1.2, b=0.75, avg_len=256.
   If two stems hash to one id the later distinct stem's value replaces the earlier one
   (fastembed writes a dict keyed by id), stems taken in order of first appearance.
5. Query: every distinct id with value 1.

The English stop words are NLTK's list, the one Qdrant ships (`english.txt` of the
`Qdrant/bm25` model files; the same list as Qdrant server's
`lib/segment/src/index/field_index/full_text_index/stop_words/english.rs`).
Output differs from fastembed's only in form: indices sorted ascending as uint32, values
float32 (fastembed gives unsorted int64 ids with float64 document values, int64 query ones).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import mmh3
import numpy as np
from py_rust_stemmers import SnowballStemmer

SparseVector = tuple[np.ndarray, np.ndarray]

# NLTK English stop words, in NLTK's order.
_NLTK_ENGLISH = """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them
    their theirs themselves what which who whom this that that'll these those am is are was
    were be been being have has had having do does did doing a an the and but if or because
    as until while of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here there
    when where why how all any both each few more most other some such no nor not only own
    same so than too very s t can will just don don't should should've now d ll m o re ve y
    ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven
    haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
    shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
"""
ENGLISH_STOPWORDS: frozenset[str] = frozenset(_NLTK_ENGLISH.split())

_STOPWORDS = {"english": ENGLISH_STOPWORDS}
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_NOT_WORD = re.compile(r"[^\w]")
_CHUNK_CHARS = 1 << 16


@cache
def _stemmer(language: str) -> SnowballStemmer:
    return SnowballStemmer(language)


def token_id(token: str) -> int:
    """The sparse dimension of a (stemmed) token: |signed 32-bit MurmurHash3, seed 0|."""
    return abs(mmh3.hash(token))


def split_words(text: str) -> list[str]:
    """fastembed's `remove_non_alphanumeric` followed by its `SimpleTokenizer`.

    Each step maps characters to characters and keeps every space a word boundary, so a long
    text goes through in chunks cut at spaces: the same words, without one regular
    expression call holding the GIL (and a server's event loop) for a whole megabyte.
    """
    words: list[str] = []
    for chunk in _chunks(text):
        chunk = _NOT_WORD_OR_SPACE.sub(" ", chunk)
        words.extend(_NOT_WORD.sub(" ", chunk.lower()).split())
    return words


def _chunks(text: str) -> Iterator[str]:
    """`text` in pieces of about `_CHUNK_CHARS`, each cut just before a space."""
    start = 0
    while len(text) - start > _CHUNK_CHARS:
        cut = text.find(" ", start + _CHUNK_CHARS)
        if cut < 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _is_punctuation(token: str) -> bool:
    return len(token) == 1 and unicodedata.category(token).startswith("P")


@dataclass(frozen=True, slots=True)
class Bm25:
    """The options of fastembed's `Bm25(...)` constructor that change its output."""

    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    language: str = "english"
    token_max_length: int = 40
    disable_stemmer: bool = False

    def __post_init__(self) -> None:
        if self.language not in _STOPWORDS:
            raise ValueError(f"BM25 language {self.language!r} is not supported (english only)")

    def stems(self, text: str) -> list[str]:
        """The kept tokens of `text`, stemmed, in order and with repeats."""
        stopwords = frozenset() if self.disable_stemmer else _STOPWORDS[self.language]
        stemmer = None if self.disable_stemmer else _stemmer(self.language)
        out: list[str] = []
        for token in split_words(text):
            if _is_punctuation(token) or token in stopwords:
                continue
            if len(token) > self.token_max_length:
                continue
            stem = stemmer.stem_word(token) if stemmer is not None else token
            if stem:
                out.append(stem)
        return out

    def document(self, text: str) -> SparseVector:
        """The vector fastembed's `embed` gives a document: BM25 term-frequency weights."""
        stems = self.stems(text)
        norm = self.k * (1 - self.b + self.b * len(stems) / self.avg_len)
        weights: dict[int, float] = {}
        for stem, tf in Counter(stems).items():
            weights[token_id(stem)] = tf * (self.k + 1) / (tf + norm)
        return _sorted(weights)

    def query(self, text: str) -> SparseVector:
        """The vector fastembed's `query_embed` gives a query: 1 per distinct dimension."""
        return _sorted(dict.fromkeys((token_id(s) for s in self.stems(text)), 1.0))


def _sorted(weights: dict[int, float]) -> SparseVector:
    indices = np.fromiter(weights, dtype=np.uint32, count=len(weights))
    values = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
    order = np.argsort(indices, kind="stable")
    return indices[order], values[order]


DEFAULT = Bm25()


def document(text: str) -> SparseVector:
    """`Qdrant/bm25` document vector with fastembed's default options."""
    return DEFAULT.document(text)


def query(text: str) -> SparseVector:
    """`Qdrant/bm25` query vector with fastembed's default options."""
    return DEFAULT.query(text)
