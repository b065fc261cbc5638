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


def test_seqs_round_trip_small_and_large() -> None:
    for seqs in ([], [1], [3, 7, 2**40, 2**62 + 5], list(range(1, 5000, 3))):
        blob = encode_seqs(np.array(seqs, dtype=np.int64))
        assert decode_seqs(blob).tolist() == seqs


def test_rows_written_in_the_first_format_still_decode() -> None:
    """Before byte planes, the blob was zlib over the plain int64 deltas."""
    import zlib

    old = zlib.compress(np.diff(np.array([0, 4, 9, 100], dtype=np.int64)).tobytes(), 1)
    assert decode_seqs(old).tolist() == [4, 9, 100]
    assert decode_seqs(add_seqs(old, np.array([5]))).tolist() == [4, 5, 9, 100]


def test_rows_written_with_eight_byte_planes_still_decode() -> None:
    import zlib

    deltas = np.diff(np.array([0, 4, 9, 2**40], dtype=np.int64)).astype("<u8")
    planes = np.ascontiguousarray(deltas.view(np.uint8).reshape(-1, 8).T).tobytes()
    old = b"\x01" + zlib.compress(planes, 1)
    assert decode_seqs(old).tolist() == [4, 9, 2**40]
    assert decode_seqs(add_seqs(old, np.array([5]))).tolist() == [4, 5, 9, 2**40]


def test_ten_thousand_seqs_of_a_100k_collection_fit_in_7_kb() -> None:
    """Three planes of deltas below 2**24; the five empty ones are not stored."""
    seqs = np.sort(np.random.default_rng(1).choice(100_000, 10_000, replace=False) + 1)
    assert len(encode_seqs(seqs)) <= 7_000
