"""The returned-seqs blob of a session: a set that grows page by page, merged linearly."""

from __future__ import annotations

import numpy as np

from app.services.sessions import add_seqs, decode_seqs, encode_seqs


def test_pages_merge_into_the_sorted_set_without_duplicates() -> None:
    rng = np.random.default_rng(0)
    expected: set[int] = set()
    blob = encode_seqs(np.zeros(0, np.int64))
    for _ in range(300):
        page = rng.integers(0, 4000, size=rng.integers(0, 12))
        expected |= set(page.tolist())
        blob = add_seqs(blob, page)
    assert decode_seqs(blob).tolist() == sorted(expected)


def test_an_empty_blob_starts_the_set() -> None:
    assert decode_seqs(add_seqs(b"", np.array([5, 3, 5]))).tolist() == [3, 5]
