"""`app.embedding.bm25` against fastembed's `Qdrant/bm25` definition.

Expected values are worked out by hand from fastembed's algorithm (see the module
docstring); the `FASTEMBED_0_9_1` rows were also produced by fastembed 0.9.1 itself
(`Bm25("Qdrant/bm25", specific_model_path=...)` with NLTK's English stop words as
`english.txt`) and matched bit for bit after the cast to float32.
"""

import mmh3
import numpy as np
import pytest

from app.embedding import bm25
from app.embedding.bm25 import Bm25, token_id


def tf_weight(tf: int, doc_len: int, k: float = 1.2, b: float = 0.75, avg: float = 256.0):
    return np.float32(tf * (k + 1) / (tf + k * (1 - b + b * doc_len / avg)))


def as_dict(vector: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
    indices, values = vector
    return dict(zip(indices.tolist(), values.tolist(), strict=True))


def test_token_id_is_abs_of_signed_murmur3():
    assert token_id("hello") == mmh3.hash("hello") == 613153351
    assert mmh3.hash("run") == -243905464
    assert token_id("run") == 243905464
    assert token_id("café") == 605818632  # hashed as UTF-8


@pytest.mark.parametrize(
    ("text", "stems"),
    [
        (
            "The quick brown fox jumps over the lazy dog.",
            ["quick", "brown", "fox", "jump", "lazi", "dog"],
        ),
        ("Running runners run; the runner RUNS!", ["run", "runner", "run", "runner", "run"]),
        # apostrophe and hyphen split words; "t" and "it"/"s" are stop words; "_" is a word char
        (
            "Don't stop-believing: it's 2024_v2 & café naïve",
            ["stop", "believ", "2024_v2", "café", "naïv"],
        ),
        ("the and of a", []),
        ("", []),
        ("_ __ a_b", ["__", "a_b"]),  # a lone "_" is punctuation (category Pc)
        ("x" * 41 + " " + "y" * 40, ["y" * 39 + "i"]),  # longer than 40 is dropped before stemming
    ],
)
def test_stems(text, stems):
    assert Bm25().stems(text) == stems


def test_disable_stemmer_also_disables_stop_words():
    assert Bm25(disable_stemmer=True).stems("Running THE runners!") == ["running", "the", "runners"]


def test_document_weights():
    indices, values = bm25.document("The quick brown fox jumps over the lazy dog.")
    assert indices.dtype == np.uint32 and values.dtype == np.float32
    assert indices.tolist() == sorted(
        token_id(s) for s in ["quick", "brown", "fox", "jump", "lazi", "dog"]
    )
    # six kept tokens, each once: 2.2 / (1 + 1.2 * (0.25 + 0.75 * 6 / 256))
    assert values.tolist() == [tf_weight(1, 6)] * 6
    assert values[0] == np.float32(1.6652868)


def test_repeated_words_count_toward_tf():
    got = as_dict(bm25.document("Running runners run; the runner RUNS!"))
    assert got == {token_id("run"): tf_weight(3, 5), token_id("runner"): tf_weight(2, 5)}
    assert got[token_id("run")] == np.float32(1.989403)


def test_case_and_punctuation_do_not_matter():
    assert as_dict(bm25.document("Hello, world! Hello again, WORLD...")) == {
        613153351: tf_weight(2, 4),  # hello, world, hello, world ("again" is a stop word)
        token_id("world"): tf_weight(2, 4),
    }


def test_query_is_one_per_distinct_id_sorted():
    indices, values = bm25.query("Running runners run; the runner RUNS!")
    assert indices.dtype == np.uint32 and values.dtype == np.float32
    assert indices.tolist() == sorted([token_id("run"), token_id("runner")])
    assert values.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("text", ["", "the and of a", "!!! ... ,"])
def test_nothing_left_gives_empty_vectors(text):
    for indices, values in (bm25.document(text), bm25.query(text)):
        assert indices.dtype == np.uint32 and values.dtype == np.float32
        assert len(indices) == len(values) == 0


def test_options():
    # b=0: document length is ignored, weight = tf * (k + 1) / (tf + k)
    model = Bm25(k=1.5, b=0.0)
    assert as_dict(model.document("cat cat dog")) == {
        token_id("cat"): np.float32(2 * 2.5 / 3.5),
        token_id("dog"): np.float32(2.5 / 2.5),
    }
    model = Bm25(k=1.5, b=0.5, avg_len=10.0)
    assert as_dict(model.document("cat cat dog")) == {
        token_id("cat"): tf_weight(2, 3, k=1.5, b=0.5, avg=10.0),
        token_id("dog"): tf_weight(1, 3, k=1.5, b=0.5, avg=10.0),
    }
    with pytest.raises(ValueError, match="english only"):
        Bm25(language="german")


def test_hash_collision_keeps_the_later_distinct_stem():
    # "w30181" and "w38066" share a murmur3 hash; fastembed's dict write lets the stem seen
    # later (by first appearance) overwrite the earlier one's weight, and queries dedupe.
    assert token_id("w30181") == token_id("w38066") == 1823147687
    model = Bm25(disable_stemmer=True)
    assert as_dict(model.document("w30181 w38066 w38066")) == {1823147687: tf_weight(2, 3)}
    assert as_dict(model.document("w38066 w38066 w30181")) == {1823147687: tf_weight(1, 3)}
    assert as_dict(model.query("w30181 w38066")) == {1823147687: 1.0}


FASTEMBED_0_9_1 = [
    (
        {},
        "Don't stop-believing: it's 2024_v2 & café naïve",
        [605818632, 756638508, 1459505690, 1472062936, 1781928901],
        [1.6697302104951084] * 5,
    ),
    (
        {},
        "Running runners run; the runner RUNS!",
        [243905464, 946033505],
        [1.989403037795832, 1.8985336254845782],
    ),
    ({"disable_stemmer": True}, "w38066 w38066 w30181", [1823147687], [1.6786885245901642]),
]


@pytest.mark.parametrize(("options", "text", "indices", "values"), FASTEMBED_0_9_1)
def test_matches_fastembed_output(options, text, indices, values):
    got_indices, got_values = Bm25(**options).document(text)
    assert got_indices.tolist() == indices
    assert got_values.tolist() == np.array(values, dtype=np.float32).tolist()
    assert Bm25(**options).query(text)[0].tolist() == indices


def test_long_texts_are_split_as_in_one_piece():
    """split_words goes through long texts in chunks cut at spaces; the words are those of
    fastembed's steps applied to the whole text at once."""
    import re

    text = " ".join(f"Über-{i % 311}\tdon't,İstanbul x_{i}\n" for i in range(30_000))
    whole = re.sub(r"[^\w\s]", " ", text)
    whole = re.sub(r"\s+", " ", re.sub(r"[^\w]", " ", whole.lower())).strip().split()
    assert len(text) > 4 * bm25._CHUNK_CHARS
    assert bm25.split_words(text) == whole
