#!/usr/bin/env python3
"""Sparse (BM25) and hybrid (dense + sparse, RRF) top-10 over HTTP against PostgreSQL baselines.

Corpus: ``wordnet-minilm`` (``../shared/data``): the first ``--points`` passages of
``base_texts.txt`` with their MiniLM vectors (``base.npy``), the first ``--queries`` passages of
``query_texts.txt`` with theirs (``queries.npy``) as queries.

Sparse vectors (made here, no model): lowercase, split on non-alphanumerics (``[a-z0-9]+``),
drop PostgreSQL's English stop words (the same 127 words ``to_tsvector('english', ...)``
drops; no stemming); token id = position in the vocabulary of the loaded passages (first seen
first). Document weight of a term: BM25's ``tf*(k1+1) / (tf + k1*(1 - b + b*len/avglen))``,
k1 = 1.2, b = 0.75, len = tokens kept, as float32. Query: weight 1 per distinct term known to
the vocabulary (unknown terms match nothing and are dropped; a query left with no term is
skipped). IDF is applied **at query time by the service** (the collection's sparse vector has
``{"modifier": "idf"}``: ``ln((N - df + 0.5)/(df + 0.5) + 1)``, N = points, df = points with
the term); for pgvector, which has no IDF modifier, the IDF is **baked into the query vector's
values** instead, so both compute the same BM25 score.

Systems, each over its usual client (one connection per client process, as the other scripts):

* sparse top-10: Waypoint ``points/query`` on the sparse vector (exact) against PostgreSQL
  full-text search (``tsvector`` stored column with a GIN index, ``ts_rank_cd`` top 10; the
  query terms **OR-ed** in ``to_tsquery('english', 't1 | t2 | ...')``, because sparse retrieval
  is OR; ``plainto_tsquery`` would AND them and match far fewer rows) and pgvector 0.8
  ``sparsevec`` (``ORDER BY sparse <#> q LIMIT 10``: exact seq scan, and HNSW
  ``sparsevec_ip_ops`` m=16 ef_construction=64 with ``hnsw.ef_search`` ``--pg-sparse-ef``).
  Target: Waypoint >= 5x the full-text QPS at 1 and 8 clients.
* hybrid top-10: Waypoint ``points/query`` with two prefetches (dense HNSW top-L, sparse top-L)
  fused by ``{"fusion": "rrf"}``, against the SQL hybrid recipe of pgvector's examples (one
  statement: a CTE with HNSW dense top-L by ``<=>``, a CTE with full-text top-L by
  ``ts_rank_cd``, each numbered with ``row_number()``, full outer join, ``1/(60 + rank)``
  summed, top 10). Target: >= 3x its QPS, fused results identical to the exact computation.
* resumable hybrid query (Waypoint only): pages of 10 to page 100; per-page cost must be flat
  (median latency of page 100 <= 2x page 10). The pages are compared with two exact fusions,
  of the lists cut at the prefetch limit (Qdrant's prefetch semantics) and of the complete
  streams, and with one ``points/query`` carrying the same body (limit 1000).

Correctness (exact numpy references, computed here): sparse top-10 ids and scores against an
exact BM25 scan (an inverted index built by hand; float64 sums in the service's order); ties
at the 10th score count as found (score multisets). Hybrid: Qdrant's RRF as Waypoint
implements it (``app/index/fusion.py``: a point at 0-based position p of a list gets
``1/(p + 2)``, summed; ties keep first appearance, dense list first) over the exact cosine
top-L and the exact BM25 top-L. Equal scores may come in any order (upserts run in parallel,
so insertion order is not id order): where the service's list is exact but for the order of
equal scores, the reference takes that order. The hybrid check also fuses the service's own
prefetch results (sent alone) to tell the fusion from the dense HNSW approximation.

What Waypoint receives (Qdrant REST, JSON; collection ``--collection``, default bench_sparse):

* ``PUT /collections/bench_sparse`` ``{"vectors": {"dense": {"size": 384, "distance":
  "Cosine"}}, "sparse_vectors": {"text": {"modifier": "idf"}}}`` (after a DELETE of it);
* ``PUT /collections/bench_sparse/points?wait=true`` ``{"points": [{"id": 0, "vector":
  {"dense": [384 floats], "text": {"indices": [...], "values": [...]}}}, ...]}``, 1000 points
  a request, 2 requests in flight (ids ascending within a batch; batches may land in any
  order, so rows with equal BM25 scores need not be in id order);
* sparse: ``POST /collections/bench_sparse/points/query`` ``{"query": {"indices": [...],
  "values": [1.0, ...]}, "using": "text", "limit": 10, "with_payload": false}``;
* hybrid: the same route with ``{"prefetch": [{"query": [384 floats], "using": "dense",
  "limit": L}, {"query": {"indices": [...], "values": [...]}, "using": "text", "limit": L}],
  "query": {"fusion": "rrf"}, "limit": 10, "with_payload": false}`` (``--dense-ef`` adds
  ``"params": {"hnsw_ef": ef}`` to the dense prefetch); the check also sends each prefetch
  alone (``limit`` L) and the hybrid body with ``"params": {"exact": true}`` in the dense one;
* resumable (``--resumable-dialect qdrant``): ``POST
  /collections/bench_sparse/points/query/resumable`` with the hybrid body, both prefetch
  limits set to the deepest result wanted (pages x 10 = 1000: Qdrant's prefetch semantics)
  and ``"limit": 10``; answer ``{"result": {"id", "points"}}``; then ``POST
  …/resumable/{id}/next`` ``{"limit": 10}`` and ``DELETE …/resumable/{id}``. With
  ``upstash``: ``PUT /upstash/bench_sparse_upstash`` ``{"dimension": 384,
  "similarityFunction": "COSINE", "indexType": "HYBRID"}``, ``POST …/upsert`` ``[{"id": "0",
  "vector": [...], "sparseVector": {"indices", "values"}}]``, ``POST …/resumable-query``
  ``{"vector", "sparseVector", "topK": 10, "fusionAlgorithm": "RRF", "weightingStrategy":
  "IDF", "maxIdle": 3600, include flags false}``, ``…/resumable-query-next`` ``{"uuid",
  "additionalK": 10}``, ``…/resumable-query-end`` ``{"uuid"}``.

A request the service refuses (it has no sparse support yet, say) skips that part with the
HTTP error in the report; ``--baselines-only`` skips Waypoint altogether.

PostgreSQL side (asyncpg, text codecs for pgvector's types): by default the scratch cluster
of ``scripts/setup_pgvector.sh`` (pgvector 0.8, benchmark settings), database
``wp_bench_sparse``, table ``passages_<points>(id, body, tsv tsvector GENERATED ALWAYS AS
(to_tsvector('english', body)) STORED, embedding vector(384), sparse sparsevec(V))`` loaded
with COPY, a GIN index on tsv, HNSW (m=16, ef_construction=64) on embedding (cosine) and on
sparse (inner product; pgvector allows it up to 1000 non-zeros a vector).
``--skip-pgvector`` drops the sparsevec baselines only; ``--skip-postgres`` every baseline.

Measurement: every system and client count is measured in each of ``--rounds`` interleaved
rounds (order alternating); a measurement sends about ``--duration`` seconds of queries per
client count (at most ``--queries`` per client, after ``--warmup`` unmeasured ones). The table
gives medians over rounds and the per-round ratio Waypoint / system (median).

Examples (from the repository root, with the project venv):
  .venv/bin/python scripts/bench_sparse.py --points 20000 --baselines-only
  .venv/bin/python scripts/bench_sparse.py                     # 100k, starts a server on 6412
  .venv/bin/python scripts/bench_sparse.py --url http://127.0.0.1:6333 --skip-load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    NCPU,
    REPO,
    JsonlWriter,
    LoadResult,
    QdrantQuerySpec,
    machine_info,
    markdown_table,
    parent_pid,
    pids_listening_on,
    run_clients,
    shared_dir,
)
from bench_search import ints, least_noisy, log, url_port, wait_green

K = 10
QDRANT_RRF_K = 2  # app/index/fusion.py QDRANT_RRF_K: Qdrant's default (server and local mode)
UPSTASH_RRF_K = 60  # app/index/fusion.py UPSTASH_RRF_K: 1/(rank + 60), rank from 0
SQL_RRF_K = 60  # the SQL recipe's constant (pgvector's hybrid search example)
BM25_K1, BM25_B = 1.2, 0.75
TOKENIZER = "v1 lower [a-z0-9]+ pg-english-stop no-stem"
SCORE_RTOL = 1e-4  # sparse scores: service vs exact (the brief's tolerance)
PG_DB = "wp_bench_sparse"
TABLE = "passages"  # + _<points>: one table per corpus size, each kept for --skip-load
PAGE = 10

# PostgreSQL's english.stop (Snowball's list), what to_tsvector('english', ...) drops.
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now""".split()  # noqa: SIM905 (a word list reads better as text)
)
TOKEN = re.compile(r"[a-z0-9]+")

SPARSE_GROUP, HYBRID_GROUP = "sparse", "hybrid"
WAYPOINT_SPARSE, WAYPOINT_HYBRID = "waypoint sparse", "waypoint hybrid"
PG_FTS, PG_SPARSE_EXACT, PG_SPARSE_HNSW, SQL_HYBRID = (
    "pg full-text OR",
    "pgvector sparsevec exact",
    "pgvector sparsevec hnsw",
    "sql hybrid recipe",
)
BASELINE = {SPARSE_GROUP: PG_FTS, HYBRID_GROUP: SQL_HYBRID}
TARGET = {SPARSE_GROUP: 5.0, HYBRID_GROUP: 3.0}
WAYPOINT = {SPARSE_GROUP: WAYPOINT_SPARSE, HYBRID_GROUP: WAYPOINT_HYBRID}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--points", type=int, default=100_000, help="passages loaded (<= 100000)")
    ap.add_argument("--queries", type=int, default=1000, help="queries (<= 1000)")
    ap.add_argument("--clients", type=ints, default=[1, 8], help="concurrent clients")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    ap.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds a measurement aims at: fewer queries per client for slow systems",
    )
    ap.add_argument("--min-queries", type=int, default=20, help="per client and measurement")
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured queries per client")
    ap.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.1,
        help="re-measure when foreign processes used more than this share of the machine",
    )
    ap.add_argument("--retries", type=int, default=1, help="re-measurements per point")
    ap.add_argument("--retry-pause", type=float, default=5.0, help="seconds before a retry")
    ap.add_argument("--prefetch-limit", type=int, default=20, help="L: hybrid top-L per list")
    ap.add_argument("--baselines-only", action="store_true", help="no Waypoint at all")
    ap.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL baseline at all")
    ap.add_argument(
        "--skip-pgvector", action="store_true", help="no pgvector sparsevec baselines (exact, HNSW)"
    )
    ap.add_argument("--skip-resumable", action="store_true")
    ap.add_argument(
        "--skip-load",
        action="store_true",
        help="reuse the loaded baseline table and Waypoint collection when they match",
    )
    g = ap.add_argument_group("Waypoint")
    g.add_argument("--url", help="a running Waypoint server (default: start one)")
    g.add_argument("--port", type=int, default=6412, help="port of the server started here")
    g.add_argument("--service-workers", type=int, default=2, help="python -m app serve --workers")
    g.add_argument("--pin-workers", action="store_true", help="python -m app serve --pin-workers")
    g.add_argument(
        "--service-db",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the started service's wp_bench_sparse_<hex> database",
    )
    g.add_argument(
        "--keep-service-db",
        action="store_true",
        help="started service: use and keep database wp_bench_sparse_service (with "
        "--skip-load the next run reuses its collection)",
    )
    g.add_argument("--collection", default="bench_sparse")
    g.add_argument("--upload-batch", type=int, default=1000, help="points per upsert request")
    g.add_argument("--upload-parallel", type=int, default=2, help="upsert requests in flight")
    g.add_argument(
        "--dense-ef",
        type=int,
        help="hnsw_ef of Waypoint's dense prefetch (params.hnsw_ef) and pgvector's "
        "hnsw.ef_search in the SQL recipe (default: the service's own default, "
        "ef_construct = 100; pgvector ef_search = max(100, L))",
    )
    g.add_argument(
        "--exact-dense",
        action="store_true",
        help="the timed hybrid query's dense prefetch scans exactly (params.exact: fused "
        "results identical to the exact fusion, at the cost of a scan)",
    )
    g.add_argument(
        "--resumable-dialect",
        choices=("qdrant", "upstash"),
        default="qdrant",
        help="qdrant: POST /collections/{c}/points/query/resumable with the hybrid body; "
        "upstash: a HYBRID index and /upstash/{index}/resumable-query",
    )
    g.add_argument("--resumable-queries", type=int, default=20, help="sessions walked")
    g.add_argument("--resumable-pages", type=int, default=100, help="pages of 10 per session")
    g.add_argument("--ready-timeout", type=float, default=1800.0)
    g = ap.add_argument_group("PostgreSQL")
    g.add_argument(
        "--pg-dsn",
        help="baseline database (libpq key=value or URL; created if missing, needs pgvector "
        ">= 0.8); default: scripts/setup_pgvector.sh's scratch cluster, database "
        f"{PG_DB}",
    )
    g.add_argument("--pg-sparse-ef", type=int, default=40, help="hnsw.ef_search, sparsevec HNSW")
    g = ap.add_argument_group("files")
    g.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    g.add_argument("--out", type=Path, default=REPO / "bench-out" / "bench_sparse.jsonl")
    args = ap.parse_args(argv)
    if not 1 <= args.points <= 100_000 or not 1 <= args.queries <= 1000:
        ap.error("--points must be 1..100000 and --queries 1..1000")
    if args.baselines_only and args.skip_postgres:
        ap.error("--baselines-only with --skip-postgres leaves nothing to measure")
    return args


# ----------------------------------------------------------------------------------------------
# Corpus: tokens, BM25 document vectors, query terms, dense vectors
# ----------------------------------------------------------------------------------------------
def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric runs without stop words."""
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


@dataclass
class Corpus:
    """Everything both sides and the references need, for the loaded passages."""

    texts: list[str]
    dense: np.ndarray  # (n, 384) float32, row i = id i
    vocab: dict[str, int]
    doc_ptr: np.ndarray  # CSR over documents: (n + 1,) int64
    doc_dims: np.ndarray  # int32, ascending within a document
    doc_vals: np.ndarray  # float32 BM25 term weights
    post_ptr: np.ndarray  # CSR over terms (postings): (V + 1,) int64
    post_rows: np.ndarray  # int32, ascending within a term
    post_vals: np.ndarray  # float32
    df: np.ndarray  # int64 per term
    idf: np.ndarray  # float64 per term, Qdrant's formula
    query_rows: list[int]  # row in query_texts / queries.npy of each kept query
    query_texts: list[str]
    query_terms: list[list[str]]  # distinct known terms, in dimension order
    query_dims: list[np.ndarray]  # int32 ascending
    query_dense: np.ndarray  # (q, 384) float32
    skipped_queries: int
    signature: str

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def doc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.doc_ptr[i], self.doc_ptr[i + 1]
        return self.doc_dims[lo:hi], self.doc_vals[lo:hi]


def build_corpus(data: Path, n: int, q: int) -> Corpus:
    """Tokenize, build the vocabulary, BM25 weights, postings and the query terms."""
    with (data / "base_texts.txt").open(encoding="utf-8") as fh:
        texts = [line.rstrip("\n") for _, line in zip(range(n), fh, strict=False)]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} passages in {data / 'base_texts.txt'}")
    vocab: dict[str, int] = {}
    counts: list[Counter] = []
    lengths = np.empty(n, dtype=np.float64)
    for i, text in enumerate(texts):
        toks = tokens(text)
        lengths[i] = len(toks)
        c = Counter(vocab.setdefault(t, len(vocab)) for t in toks)
        counts.append(c)
    avglen = float(lengths.mean())
    ptr = np.zeros(n + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(c) for c in counts])
    dims = np.empty(int(ptr[-1]), dtype=np.int32)
    tfs = np.empty(int(ptr[-1]), dtype=np.float64)
    for i, c in enumerate(counts):
        items = sorted(c.items())
        dims[ptr[i] : ptr[i + 1]] = [d for d, _ in items]
        tfs[ptr[i] : ptr[i + 1]] = [t for _, t in items]
    doc_len = np.repeat(lengths, np.diff(ptr))
    norm = BM25_K1 * (1 - BM25_B + BM25_B * doc_len / avglen)
    vals = (tfs * (BM25_K1 + 1) / (tfs + norm)).astype(np.float32)
    v = len(vocab)
    order = np.argsort(dims, kind="stable")  # rows stay ascending within a term
    rows = np.repeat(np.arange(n, dtype=np.int32), np.diff(ptr))
    df = np.bincount(dims, minlength=v).astype(np.int64)
    post_ptr = np.zeros(v + 1, dtype=np.int64)
    post_ptr[1:] = np.cumsum(df)
    idf = np.log((n - df.astype(np.float64) + 0.5) / (df.astype(np.float64) + 0.5) + 1.0)

    with (data / "query_texts.txt").open(encoding="utf-8") as fh:
        all_queries = [line.rstrip("\n") for _, line in zip(range(q), fh, strict=False)]
    rows_kept, qtexts, qterms, qdims = [], [], [], []
    for r, text in enumerate(all_queries):
        known = sorted({vocab[t] for t in tokens(text) if t in vocab})
        if not known:
            continue
        inverse = {vocab[t]: t for t in set(tokens(text)) if t in vocab}
        rows_kept.append(r)
        qtexts.append(text)
        qdims.append(np.asarray(known, dtype=np.int32))
        qterms.append([inverse[d] for d in known])
    dense = np.ascontiguousarray(np.load(data / "base.npy")[:n], dtype=np.float32)
    qdense = np.ascontiguousarray(np.load(data / "queries.npy")[rows_kept], dtype=np.float32)
    sig = hashlib.sha256(
        f"{TOKENIZER} k1={BM25_K1} b={BM25_B} n={n} v={v} nnz={len(dims)} "
        f"{texts[0]}|{texts[-1]}".encode()
    ).hexdigest()[:16]
    return Corpus(
        texts=texts,
        dense=dense,
        vocab=vocab,
        doc_ptr=ptr,
        doc_dims=dims,
        doc_vals=vals,
        post_ptr=post_ptr,
        post_rows=rows[order],
        post_vals=vals[order],
        df=df,
        idf=idf,
        query_rows=rows_kept,
        query_texts=qtexts,
        query_terms=qterms,
        query_dims=qdims,
        query_dense=qdense,
        skipped_queries=len(all_queries) - len(rows_kept),
        signature=sig,
    )


# ----------------------------------------------------------------------------------------------
# Exact references (numpy)
# ----------------------------------------------------------------------------------------------
@dataclass
class Ranked:
    """A ranked list: ids best first and their exact scores."""

    ids: np.ndarray
    scores: np.ndarray


class Reference:
    """Exact BM25 (inverted index over the CSR), exact cosine, Qdrant/Upstash RRF."""

    def __init__(self, corpus: Corpus) -> None:
        self.c = corpus
        dense = corpus.dense.astype(np.float64)
        self.norms = np.linalg.norm(dense, axis=1)
        self.unit32 = (dense / self.norms[:, None]).astype(np.float32)
        self._matches: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # sparse ------------------------------------------------------------------------------
    def sparse_matches(self, qi: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows sharing a term with query `qi`, their exact scores): the dot product with
        the IDF-weighted query values in float64, summed term by term in ascending dimension
        order as the service does (app/index/sparse.py)."""
        if qi not in self._matches:
            c = self.c
            acc = np.zeros(c.n, dtype=np.float64)
            matched = np.zeros(c.n, dtype=bool)
            for d in c.query_dims[qi]:
                lo, hi = c.post_ptr[d], c.post_ptr[d + 1]
                rows = c.post_rows[lo:hi]
                acc[rows] += c.post_vals[lo:hi].astype(np.float64) * (1.0 * c.idf[d])
                matched[rows] = True
            rows = np.flatnonzero(matched)
            self._matches[qi] = (rows, acc[rows])
        return self._matches[qi]

    def sparse_lookup(self, qi: int) -> np.ndarray:
        """Exact score of every row for query `qi`, -inf where no term is shared."""
        rows, scores = self.sparse_matches(qi)
        out = np.full(self.c.n, -np.inf)
        out[rows] = scores
        return out

    def sparse_top(self, qi: int, limit: int | None) -> Ranked:
        """Exact top-`limit` (None: all matches), ties by id (= insertion order)."""
        rows, scores = self.sparse_matches(qi)
        order = np.lexsort((rows, -scores))
        if limit is not None:
            order = order[:limit]
        return Ranked(rows[order], scores[order])

    # dense -------------------------------------------------------------------------------
    def dense_top_all(self, limit: int, chunk: int = 64) -> list[Ranked]:
        """Exact cosine top-`limit` of every query: float32 candidates, float64 re-rank."""
        c = self.c
        extra = min(c.n, limit + 64)
        q64 = c.query_dense.astype(np.float64)
        qn = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        out: list[Ranked] = []
        for lo in range(0, len(qn), chunk):
            sims = qn[lo : lo + chunk].astype(np.float32) @ self.unit32.T
            cand = np.argpartition(-sims, extra - 1, axis=1)[:, :extra]
            for j, rows in enumerate(cand):
                out.append(self._rerank(rows, qn[lo + j], limit))
        return out

    def dense_top(self, qi: int, limit: int) -> Ranked:
        """Exact cosine top-`limit` of one query (deep lists for the resumable check)."""
        q64 = self.c.query_dense[qi].astype(np.float64)
        qn = q64 / np.linalg.norm(q64)
        sims = self.unit32 @ qn.astype(np.float32)
        extra = min(self.c.n, limit + 256)
        rows = np.argpartition(-sims, extra - 1)[:extra]
        return self._rerank(rows, qn, limit)

    def _rerank(self, rows: np.ndarray, qn: np.ndarray, limit: int) -> Ranked:
        s = (self.c.dense[rows].astype(np.float64) / self.norms[rows, None]) @ qn
        order = np.lexsort((rows, -s))[:limit]
        return Ranked(rows[order], s[order])

    def cosine(self, qi: int, rows: Sequence[int]) -> np.ndarray:
        q64 = self.c.query_dense[qi].astype(np.float64)
        qn = q64 / np.linalg.norm(q64)
        idx = np.asarray(rows, dtype=np.int64)
        return (self.c.dense[idx].astype(np.float64) / self.norms[idx, None]) @ qn


def rrf(
    lists: Sequence[Sequence[int]], k: int, limit: int | None = None
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion as Waypoint (and qdrant-client local mode) computes it: a point
    at 0-based position p of a list gets 1/((p + 1.0)/1.0 + k - 1.0) = 1/(p + k), summed in
    float64 list by list; best first, ties in order of first appearance (list 0 first)."""
    fused: dict[int, float] = {}
    for items in lists:
        for pos, pid in enumerate(items):
            gain = 1 / ((pos + 1.0) / 1.0 + k - 1.0)
            fused[int(pid)] = fused.get(int(pid), 0.0) + gain
    ranked = sorted(fused.items(), key=lambda item: item[1], reverse=True)
    return ranked if limit is None else ranked[:limit]


def tie_recall(returned: Sequence[int], truth: Ranked, score_of: np.ndarray, k: int = K) -> float:
    """recall@k where ties at the k-th exact score count: a returned id is a hit when it is a
    match whose exact score reaches the k-th best (relative tolerance SCORE_RTOL)."""
    want = min(k, len(truth.ids))
    if want == 0:
        return 1.0
    kth = float(truth.scores[want - 1])
    floor = kth - SCORE_RTOL * abs(kth)
    truth_set = {int(x) for x in truth.ids[:want]}
    hits = 0
    for pid in list(returned)[:k]:
        pid = int(pid)
        if pid in truth_set or (0 <= pid < len(score_of) and score_of[pid] >= floor):
            hits += 1
    return min(hits, want) / want


def same_up_to_ties(ids: Sequence[int], truth: Ranked, score_of: Callable, atol: float) -> bool:
    """Whether `ids` is the exact ranked list `truth` but for the order of equal scores: the
    same length, and at each position an exact score equal to the truth's there."""
    if len(ids) != len(truth.ids):
        return False
    if not len(ids):
        return True
    got = score_of(list(ids))
    tol = atol + SCORE_RTOL * 1e-2 * np.abs(truth.scores)
    return bool(np.all(np.abs(got - truth.scores) <= tol))


# ----------------------------------------------------------------------------------------------
# PostgreSQL baselines (asyncpg, one connection per client process)
# ----------------------------------------------------------------------------------------------
def pg_connect_kwargs(dsn: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments from a URL or a libpq key=value string."""
    if "://" in dsn:
        return {"dsn": dsn}
    names = {"host": "host", "port": "port", "user": "user", "dbname": "database"}
    names["password"] = "password"
    out: dict[str, Any] = {}
    for part in dsn.split():
        key, _, value = part.partition("=")
        if key in names:
            out[names[key]] = int(value) if key == "port" else value
    return out


async def pg_open(kw: dict[str, Any]):
    """A connection with text codecs for pgvector's types (queries pass them as text)."""
    import asyncpg

    conn = await asyncpg.connect(**kw)
    for typ in ("vector", "sparsevec"):
        with contextlib.suppress(ValueError):
            await conn.set_type_codec(typ, schema="public", encoder=str, decoder=str, format="text")
    return conn


def setup_postgres(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline database's connection arguments: --pg-dsn (database created if missing)
    or scripts/setup_pgvector.sh's scratch cluster with database wp_bench_sparse."""
    if args.pg_dsn:
        kw = pg_connect_kwargs(args.pg_dsn)
    else:
        script = Path(__file__).resolve().parent / "setup_pgvector.sh"
        log(f"running {script} (database {PG_DB})")
        out = subprocess.run(
            ["bash", str(script), "start"],
            check=True,
            text=True,
            stdout=subprocess.PIPE,
            env={**os.environ, "WAYPOINT_PGV_DB": PG_DB},
        ).stdout
        kw = pg_connect_kwargs(out.strip().splitlines()[-1])
    asyncio.run(_ensure_database(kw))
    return kw


async def _ensure_database(kw: dict[str, Any]) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(**kw)
    except asyncpg.InvalidCatalogNameError:
        admin = dict(kw)
        if "dsn" in admin:
            u = urlsplit(kw["dsn"])
            name = u.path.lstrip("/")
            admin["dsn"] = urlunsplit(u._replace(path="/postgres"))
        else:
            name = admin.pop("database")
            admin["database"] = "postgres"
        a = await asyncpg.connect(**admin)
        await a.execute(f'CREATE DATABASE "{name}"')
        await a.close()
        conn = await asyncpg.connect(**kw)
    try:
        await conn.execute("SET client_min_messages = warning")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='vector'")
        if tuple(int(x) for x in version.split(".")[:2]) < (0, 8):
            raise SystemExit(f"pgvector {version} < 0.8 (no sparsevec): run setup_pgvector.sh")
        log(
            f"baseline database: {await conn.fetchval('SELECT current_database()')}, "
            f"pgvector {version}, {await conn.fetchval('SELECT version()')}"
        )
    finally:
        await conn.close()


def table_name(corpus: Corpus) -> str:
    return f"{TABLE}_{corpus.n}"


def vector_text(v: np.ndarray) -> str:
    """pgvector's text form of a dense vector (exact float32 values)."""
    return "[" + ",".join(map(repr, v.tolist())) + "]"


def sparsevec_text(dims: np.ndarray, vals: np.ndarray, size: int) -> str:
    """pgvector's text form of a sparse vector: 1-based indices."""
    body = ",".join(f"{d + 1}:{v!r}" for d, v in zip(dims.tolist(), vals.tolist(), strict=True))
    return f"{{{body}}}/{size}"


def copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


async def pg_load(kw: dict, corpus: Corpus, args: argparse.Namespace, rep: JsonlWriter) -> None:
    """(Re)create the table with COPY and build the GIN and dense HNSW indexes, unless
    --skip-load finds one with the same signature; build the sparsevec HNSW when needed."""
    conn = await pg_open(kw)
    try:
        await conn.execute("SET client_min_messages = warning")
        if await conn.fetchval("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))") < (
            1 << 30
        ):
            await conn.execute("SET maintenance_work_mem = '1GB'")
        signature = f"{corpus.signature} n={corpus.n} v={corpus.vocab_size}"
        table = table_name(corpus)
        current = await conn.fetchval("SELECT obj_description(to_regclass($1), 'pg_class')", table)
        if args.skip_load and current == signature:
            log(f"reusing table {table} ({signature})")
        else:
            if args.skip_load:
                log(f"table {table} missing or different ({current!r}): loading it")
            await _pg_create(conn, corpus, rep)
            await conn.execute(f"COMMENT ON TABLE {table} IS '{signature}'")
        max_nnz = int(np.diff(corpus.doc_ptr).max())
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table}_sparse_hnsw")
        if not args.skip_pgvector and not exists:
            if max_nnz > 1000:
                log(f"sparsevec HNSW skipped: a vector has {max_nnz} > 1000 non-zeros")
            else:
                t0 = time.perf_counter()
                await conn.execute(
                    f"CREATE INDEX {table}_sparse_hnsw ON {table} USING hnsw "
                    "(sparse sparsevec_ip_ops) WITH (m = 16, ef_construction = 64)"
                )
                rep.add(
                    phase="load",
                    system="postgres",
                    step="sparsevec hnsw index",
                    seconds=round(time.perf_counter() - t0, 2),
                )
        mib = await conn.fetchval(f"SELECT pg_total_relation_size('{table}') / 1048576.0")
        log(f"table {table}: {float(mib):.0f} MiB with indexes; max non-zeros/doc {max_nnz}")
    finally:
        await conn.close()


async def _pg_create(conn, corpus: Corpus, rep: JsonlWriter) -> None:
    table = table_name(corpus)
    d, v = corpus.dense.shape[1], corpus.vocab_size
    await conn.execute(f"DROP TABLE IF EXISTS {table}")
    await conn.execute(
        f"""CREATE TABLE {table} (
            id int4 PRIMARY KEY,
            body text NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
            embedding vector({d}) NOT NULL,
            sparse sparsevec({v}) NOT NULL)"""
    )
    t0 = time.perf_counter()

    async def chunks(size: int = 2000):
        for lo in range(0, corpus.n, size):
            buf = io.StringIO()
            for i in range(lo, min(lo + size, corpus.n)):
                dims, vals = corpus.doc(i)
                buf.write(
                    f"{i}\t{copy_escape(corpus.texts[i])}\t{vector_text(corpus.dense[i])}\t"
                    f"{sparsevec_text(dims, vals, v)}\n"
                )
            yield buf.getvalue().encode()

    await conn.copy_to_table(
        table, source=chunks(), columns=["id", "body", "embedding", "sparse"], format="text"
    )
    steps = [("copy (+ to_tsvector)", time.perf_counter() - t0)]
    for name, sql in (
        ("gin index", f"CREATE INDEX {table}_tsv_gin ON {table} USING gin (tsv)"),
        (
            "dense hnsw index",
            f"CREATE INDEX {table}_embedding_hnsw ON {table} USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        ),
        ("vacuum analyze", f"VACUUM ANALYZE {table}"),
    ):
        t0 = time.perf_counter()
        await conn.execute(sql)
        steps.append((name, time.perf_counter() - t0))
    for name, seconds in steps:
        rep.add(
            phase="load", system="postgres", step=name, rows=corpus.n, seconds=round(seconds, 2)
        )


@dataclass
class PgSpec:
    """A baseline query for run_clients: one asyncpg connection, one prepared statement."""

    connect: dict[str, Any]
    sql: str
    params: list[tuple[str, ...]]
    setup: tuple[str, ...] = ()

    def open(self) -> _PgClient:
        return _PgClient(self)


class _PgClient:
    def __init__(self, spec: PgSpec) -> None:
        self.spec = spec
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(pg_open(spec.connect))
        for stmt in spec.setup:
            self.loop.run_until_complete(self.conn.execute(stmt))
        self.stmt = self.loop.run_until_complete(self.conn.prepare(spec.sql))

    def query(self, i: int) -> list[int]:
        rows = self.loop.run_until_complete(self.stmt.fetch(*self.spec.params[i]))
        return [r[0] for r in rows]

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def fts_query(terms: Sequence[str]) -> str:
    """The OR of the terms for to_tsquery (tokens are [a-z0-9]+: no operator characters)."""
    return " | ".join(terms)


def pg_specs(kw: dict, corpus: Corpus, args: argparse.Namespace, dense_ef: int) -> dict:
    """The baseline systems: name -> (group, PgSpec)."""
    v, L, table = corpus.vocab_size, args.prefetch_limit, table_name(corpus)
    fts = [(fts_query(t),) for t in corpus.query_terms]
    sparse = [
        (sparsevec_text(d, corpus.idf[d], v),)  # IDF baked into the query values
        for d in corpus.query_dims
    ]
    dense = [vector_text(x) for x in corpus.query_dense]
    specs: dict[str, tuple[str, PgSpec]] = {
        PG_FTS: (
            SPARSE_GROUP,
            PgSpec(
                kw,
                f"SELECT id FROM {table}, to_tsquery('english', $1) AS q "
                f"WHERE tsv @@ q ORDER BY ts_rank_cd(tsv, q) DESC LIMIT {K}",
                fts,
            ),
        ),
    }
    if not args.skip_pgvector:
        sql = f"SELECT id FROM {table} ORDER BY sparse <#> $1 LIMIT {K}"
        specs[PG_SPARSE_EXACT] = (
            SPARSE_GROUP,
            PgSpec(kw, sql + " /* exact */", sparse, ("SET enable_indexscan = off",)),
        )
        specs[PG_SPARSE_HNSW] = (
            SPARSE_GROUP,
            PgSpec(
                kw,
                sql + f" /* hnsw ef_search={args.pg_sparse_ef} */",
                sparse,
                (f"SET hnsw.ef_search = {args.pg_sparse_ef}",),
            ),
        )
    hybrid_sql = f"""
WITH semantic AS (
    SELECT id, row_number() OVER (ORDER BY embedding <=> $1) AS rank
    FROM {table}
    ORDER BY embedding <=> $1
    LIMIT {L}
), keyword AS (
    SELECT id, row_number() OVER (ORDER BY ts_rank_cd(tsv, q) DESC) AS rank
    FROM {table}, to_tsquery('english', $2) AS q
    WHERE tsv @@ q
    ORDER BY ts_rank_cd(tsv, q) DESC
    LIMIT {L}
)
SELECT COALESCE(semantic.id, keyword.id) AS id,
       COALESCE(1.0 / ({SQL_RRF_K} + semantic.rank), 0.0)
       + COALESCE(1.0 / ({SQL_RRF_K} + keyword.rank), 0.0) AS score
FROM semantic FULL OUTER JOIN keyword ON semantic.id = keyword.id
ORDER BY score DESC
LIMIT {K}"""
    specs[SQL_HYBRID] = (
        HYBRID_GROUP,
        PgSpec(
            kw,
            hybrid_sql,
            [(dense[i], fts[i][0]) for i in range(len(dense))],
            (f"SET hnsw.ef_search = {dense_ef}",),
        ),
    )
    return specs


async def pg_explain(kw: dict, spec: PgSpec) -> str:
    """The scan nodes of the statement's plan for query 0 (which index, if any)."""
    conn = await pg_open(kw)
    try:
        for stmt in spec.setup:
            await conn.execute(stmt)
        rows = await conn.fetch("EXPLAIN (COSTS OFF) " + spec.sql, *spec.params[0])
        nodes = [
            r[0].strip().removeprefix("->  ").split("  ")[0]
            for r in rows
            if "Scan" in r[0] and "Function Scan" not in r[0] and "Subquery" not in r[0]
        ]
        return "; ".join(nodes)
    finally:
        await conn.close()


async def pg_dense_recall(kw: dict, corpus: Corpus, ref_dense: list[Ranked], ef: int, L: int):
    """Recall@L of the SQL recipe's dense CTE alone (HNSW at ef_search) vs exact cosine."""
    conn = await pg_open(kw)
    try:
        await conn.execute(f"SET hnsw.ef_search = {ef}")
        table = table_name(corpus)
        stmt = await conn.prepare(f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {L}")
        total = 0.0
        for i, x in enumerate(corpus.query_dense):
            got = {r[0] for r in await stmt.fetch(vector_text(x))}
            total += len(got & set(ref_dense[i].ids.tolist())) / L
        return total / len(corpus.query_dense)
    finally:
        await conn.close()


async def pg_server_pids(kw: dict) -> list[int]:
    conn = await pg_open(kw)
    try:
        postmaster = parent_pid(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    return [postmaster] if postmaster else []


# ----------------------------------------------------------------------------------------------
# Waypoint: server, collection, bodies
# ----------------------------------------------------------------------------------------------
@dataclass
class Service:
    url: str
    server_pids: list[int]


@contextlib.contextmanager
def started_service(args: argparse.Namespace) -> Iterator[Service]:
    """--url, or ``python -m app serve`` on --port with a wp_bench_sparse_* database."""
    if args.url:
        port = url_port(args.url)
        yield Service(args.url.rstrip("/"), pids_listening_on(port) if port else [])
        return
    import httpx

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            raise RuntimeError(f"port {args.port} is in use: pass --url or --port")
    keep = args.keep_service_db
    name = f"{PG_DB}_service" if keep else f"{PG_DB}_{uuid.uuid4().hex[:10]}"
    server = args.service_db.rstrip("/")
    admin = {"dsn": f"{server}/postgres"}
    postmaster = asyncio.run(_create_service_db(admin, name))
    if keep:
        data_dir = REPO / "bench-out" / f"{name}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="wp-bench-sparse-"))
    log_path = args.out.parent / "bench_sparse-service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(args.port)]
    cmd += ["--workers", str(args.service_workers)] + (
        ["--pin-workers"] if args.pin_workers else []
    )
    env = {**os.environ, "DATABASE_URL": f"{server}/{name}", "WAYPOINT_DATA_DIR": str(data_dir)}
    log(
        f"starting service on port {args.port}: {args.service_workers} worker(s), database "
        f"{name} (log {log_path})"
    )
    with log_path.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + min(args.ready_timeout, 300)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"service not ready; see {log_path}")
            time.sleep(0.2)
        yield Service(url, [proc.pid] + ([postmaster] if postmaster else []))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not keep:
            asyncio.run(_drop_service_db(admin, name))
            shutil.rmtree(data_dir, ignore_errors=True)


async def _create_service_db(admin: dict, name: str) -> int | None:
    import asyncpg

    conn = await asyncpg.connect(**admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return parent_pid(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


async def _drop_service_db(admin: dict, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class WaypointUnavailable(Exception):
    """The service answered a request this benchmark needs with an error."""


def check(r: Any, what: str) -> Any:
    if r.status_code != 200:
        raise WaypointUnavailable(f"{what}: HTTP {r.status_code} {r.text[:400]}")
    return r.json()


def collection_body() -> dict:
    return {
        "vectors": {"dense": {"size": 384, "distance": "Cosine"}},
        "sparse_vectors": {"text": {"modifier": "idf"}},
    }


def point_body(corpus: Corpus, i: int) -> dict:
    dims, vals = corpus.doc(i)
    return {
        "id": i,
        "vector": {
            "dense": corpus.dense[i].tolist(),
            "text": {"indices": dims.tolist(), "values": vals.tolist()},
        },
    }


def sparse_query(corpus: Corpus, qi: int) -> dict:
    """Query values 1 per distinct term: the collection's IDF modifier weights them."""
    dims = corpus.query_dims[qi]
    return {"indices": dims.tolist(), "values": [1.0] * len(dims)}


def sparse_body(corpus: Corpus, qi: int, limit: int = K) -> dict:
    return {
        "query": sparse_query(corpus, qi),
        "using": "text",
        "limit": limit,
        "with_payload": False,
    }


def dense_prefetch(corpus: Corpus, qi: int, limit: int, ef: int | None, exact: bool = False):
    body: dict[str, Any] = {
        "query": corpus.query_dense[qi].tolist(),
        "using": "dense",
        "limit": limit,
    }
    params = {**({"hnsw_ef": ef} if ef else {}), **({"exact": True} if exact else {})}
    if params:
        body["params"] = params
    return body


def hybrid_body(
    corpus: Corpus, qi: int, limit: int, ef: int | None, exact_dense: bool = False
) -> dict:
    """Two prefetches (dense first, sparse second) fused by RRF, top 10."""
    return {
        "prefetch": [
            dense_prefetch(corpus, qi, limit, ef, exact_dense),
            {"query": sparse_query(corpus, qi), "using": "text", "limit": limit},
        ],
        "query": {"fusion": "rrf"},
        "limit": K,
        "with_payload": False,
    }


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def upload(http: Any, svc: Service, corpus: Corpus, args: argparse.Namespace, rep) -> None:
    """Create the collection (or reuse it with --skip-load) and upsert in parallel batches."""
    from concurrent.futures import ThreadPoolExecutor

    coll = args.collection
    if args.skip_load:
        r = http.get(f"/collections/{coll}")
        info = (r.json().get("result") or {}) if r.status_code == 200 else {}
        params = (info.get("config") or {}).get("params") or {}
        if info.get("points_count") == corpus.n and "text" in (params.get("sparse_vectors") or {}):
            log(f"reusing collection {coll} ({corpus.n} points)")
            wait_green(http, coll, args.ready_timeout)
            return
        log(f"collection {coll} missing or different: loading it")
    http.delete(f"/collections/{coll}")
    check(http.put(f"/collections/{coll}", json=collection_body()), "create collection")
    batches = [
        (lo, min(lo + args.upload_batch, corpus.n)) for lo in range(0, corpus.n, args.upload_batch)
    ]

    def send(bounds: tuple[int, int]) -> None:
        body = encode({"points": [point_body(corpus, i) for i in range(*bounds)]})
        r = http.put(
            f"/collections/{coll}/points",
            params={"wait": "true"},
            content=body,
            headers={"Content-Type": "application/json"},
        )
        check(r, f"upsert points {bounds[0]}..{bounds[1] - 1}")

    log(
        f"uploading {corpus.n} points to {coll}: batches of {args.upload_batch}, "
        f"{args.upload_parallel} in flight"
    )
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.upload_parallel) as pool:
        list(pool.map(send, batches))
    upload_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = wait_green(http, coll, args.ready_timeout)
    rep.add(
        phase="load",
        system="waypoint",
        step="upsert",
        rows=corpus.n,
        seconds=round(upload_s, 2),
        points_per_s=round(corpus.n / upload_s, 1),
    )
    rep.add(
        phase="load",
        system="waypoint",
        step="until green",
        seconds=round(time.perf_counter() - t0, 2),
        points_count=info.get("points_count"),
    )


@dataclass
class BodySpec(QdrantQuerySpec):
    """``points/query`` with pre-encoded bodies (bench_common's keep-alive HTTP client)."""

    bodies: list[bytes] = field(default_factory=list)

    def body(self, i: int) -> bytes:
        return self.bodies[i]


def waypoint_specs(svc: Service, corpus: Corpus, args: argparse.Namespace) -> dict:
    q = len(corpus.query_dims)
    none = np.zeros((q, 0), dtype=np.float32)
    sparse = [encode(sparse_body(corpus, i)) for i in range(q)]
    hybrid = [
        encode(hybrid_body(corpus, i, args.prefetch_limit, args.dense_ef, args.exact_dense))
        for i in range(q)
    ]
    return {
        WAYPOINT_SPARSE: (SPARSE_GROUP, BodySpec(svc.url, args.collection, none, bodies=sparse)),
        WAYPOINT_HYBRID: (HYBRID_GROUP, BodySpec(svc.url, args.collection, none, bodies=hybrid)),
    }


def points_of(doc: dict) -> list[tuple[int, float]]:
    return [(int(p["id"]), float(p["score"])) for p in doc["result"]["points"]]


def check_sparse(http, corpus: Corpus, ref: Reference, args, rep) -> dict:
    """Waypoint sparse top-10 against the exact BM25 scan: recall (ties as score multisets)
    and every returned score against the exact one."""
    coll, recalls, bad_scores, bad_order, short = args.collection, [], 0, 0, 0
    example = None
    for qi in range(len(corpus.query_dims)):
        got = points_of(
            check(
                http.post(f"/collections/{coll}/points/query", json=sparse_body(corpus, qi)),
                "sparse query",
            )
        )
        lookup = ref.sparse_lookup(qi)
        truth = ref.sparse_top(qi, K)
        recalls.append(tie_recall([p for p, _ in got], truth, lookup))
        if len(got) != len(truth.ids):
            short += 1
        scores = [s for _, s in got]
        if any(a < b for a, b in itertools.pairwise(scores)):
            bad_order += 1
        for pid, s in got:
            exact = lookup[pid] if 0 <= pid < corpus.n and lookup[pid] > -np.inf else math.nan
            if not abs(s - exact) <= SCORE_RTOL * abs(exact):
                bad_scores += 1
                example = example or (qi, pid, s, exact)
                break
    out = {
        "recall10": round(float(np.mean(recalls)), 6),
        "queries_all_found": int(sum(r == 1.0 for r in recalls)),
        "queries_score_mismatch": bad_scores,
        "queries_out_of_order": bad_order,
        "queries_wrong_count": short,
        "queries": len(recalls),
        "example_mismatch": example,
    }
    rep.add(phase="check", system=WAYPOINT_SPARSE, **out)
    return out


def check_hybrid(http, corpus, ref, ref_dense, args, rep) -> dict:
    """Waypoint's fused top-10 against the exact RRF of exact lists; also against the RRF
    of the service's own prefetch results (the fusion alone) and with an exact dense leg."""
    coll, L = args.collection, args.prefetch_limit
    path = f"/collections/{coll}/points/query"
    n = len(corpus.query_dims)
    counts = Counter()
    dense_recall, example = [], None
    exact_leg_error = None
    truth: list[list[int]] = []  # per query: the exact fused ids (the service's tie order)
    for qi in range(n):
        fused = points_of(
            check(http.post(path, json=hybrid_body(corpus, qi, L, args.dense_ef)), "hybrid query")
        )
        s_srv = [
            p
            for p, _ in points_of(
                check(http.post(path, json=sparse_body(corpus, qi, L)), "sparse prefetch alone")
            )
        ]
        d_srv = [
            p
            for p, _ in points_of(
                check(
                    http.post(path, json=dense_prefetch(corpus, qi, L, args.dense_ef)),
                    "dense prefetch alone",
                )
            )
        ]
        s_ref, d_ref = ref.sparse_top(qi, L), ref_dense[qi]
        lookup = ref.sparse_lookup(qi)
        s_ok = same_up_to_ties(
            s_srv, s_ref, lambda ids, lookup=lookup: lookup[np.asarray(ids, dtype=np.int64)], 0.0
        )
        d_ok = same_up_to_ties(d_srv, d_ref, lambda ids, qi=qi: ref.cosine(qi, ids), 1e-6)
        dense_recall.append(len(set(d_srv) & set(d_ref.ids.tolist())) / max(1, len(d_ref.ids)))
        # exact lists; where the service's list is exact but for the order of equal scores,
        # that order (every such order is an exact answer)
        s_exact = s_srv if s_ok else s_ref.ids.tolist()
        d_exact = d_srv if d_ok else d_ref.ids.tolist()
        want = rrf([d_exact, s_exact], QDRANT_RRF_K, K)
        own = rrf([d_srv, s_srv], QDRANT_RRF_K, K)
        strict = rrf([d_ref.ids.tolist(), s_ref.ids.tolist()], QDRANT_RRF_K, K)
        truth.append([p for p, _ in want])
        counts["sparse_prefetch_exact"] += s_ok
        counts["dense_prefetch_exact"] += d_ok
        counts["identical_exact"] += same_fused(fused, want)
        counts["same_ids_exact"] += [p for p, _ in fused] == [p for p, _ in want]
        counts["identical_own_lists"] += same_fused(fused, own)
        counts["identical_strict_id_ties"] += same_fused(fused, strict)
        if not same_fused(fused, want) and example is None:
            at = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(fused, want, strict=False))
                    if not same_fused([a], [b])
                ),
                min(len(fused), len(want)),
            )
            example = {
                "query": qi,
                "first_difference_at": at,
                "service": fused[at : at + 3],
                "exact": want[at : at + 3],
                "dense_prefetch_exact": d_ok,
            }
        if exact_leg_error is None:
            r = http.post(path, json=hybrid_body(corpus, qi, L, None, exact_dense=True))
            if r.status_code != 200:
                exact_leg_error = f"HTTP {r.status_code} {r.text[:200]}"
            else:
                s_want = rrf([d_ref.ids.tolist(), s_exact], QDRANT_RRF_K, K)
                counts["identical_exact_dense_leg"] += same_fused(points_of(r.json()), s_want)
    out = {
        "queries": n,
        **dict(counts),
        "dense_prefetch_recall": round(float(np.mean(dense_recall)), 4),
        "exact_dense_leg_error": exact_leg_error,
        "example_mismatch": example,
    }
    rep.add(phase="check", system=WAYPOINT_HYBRID, **out)
    out["truth"] = truth
    return out


def same_fused(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """Same ids in the same order, scores equal to 1e-9 relative (float64 RRF, 1e-6 if the
    service sends float32)."""
    if [p for p, _ in got] != [p for p, _ in want]:
        return False
    return all(abs(a - b) <= 1e-6 * abs(b) for (_, a), (_, b) in zip(got, want, strict=True))


# ----------------------------------------------------------------------------------------------
# Resumable hybrid query: one small dialect object each, so switching is one option
# ----------------------------------------------------------------------------------------------
@dataclass
class Dialect:
    """How to start, continue and end a resumable hybrid query, and the exact fusion."""

    name: str
    prepare: Callable[[Any], None]  # creates/loads what the dialect needs
    start: Callable[[Any, int], tuple[str, list[int], Any]]  # -> handle, ids, response
    next: Callable[[Any, str], tuple[list[int], Any]]
    end: Callable[[Any, str], None]
    rrf_k: int
    list_limit: int | None  # each fused list is cut here (Qdrant prefetch limit), None: not
    # the same query in one request (ids of the first `limit`), or None: page 1..n should
    # concatenate to exactly this
    oneshot: Callable[[Any, int, int], list[int]] | None = None


def qdrant_dialect(corpus: Corpus, args: argparse.Namespace) -> Dialect:
    """Waypoint's Qdrant extension: POST …/points/query/resumable with the hybrid body whose
    prefetch limits reach the deepest page (Qdrant's prefetch semantics), then …/{id}/next."""
    coll, depth = args.collection, args.resumable_pages * PAGE
    base = f"/collections/{coll}/points/query/resumable"

    def start(http, qi):
        body = hybrid_body(corpus, qi, depth, args.dense_ef)
        body["limit"] = PAGE
        r = http.post(base, json=body)
        doc = check(r, "resumable hybrid start")["result"]
        return doc["id"], [int(p["id"]) for p in doc["points"]], r

    def nxt(http, handle):
        r = http.post(f"{base}/{handle}/next", json={"limit": PAGE})
        return [int(p["id"]) for p in check(r, "resumable next")["result"]["points"]], r

    def end(http, handle):
        http.delete(f"{base}/{handle}")

    def oneshot(http, qi, limit):
        body = hybrid_body(corpus, qi, depth, args.dense_ef)
        body["limit"] = limit
        r = http.post(f"/collections/{coll}/points/query", json=body)
        return [p for p, _ in points_of(check(r, "hybrid query, prefetch limit 1000"))]

    return Dialect(
        "qdrant", lambda http: None, start, nxt, end, QDRANT_RRF_K, depth, oneshot=oneshot
    )


def upstash_dialect(corpus: Corpus, args: argparse.Namespace) -> Dialect:
    """The Upstash dialect on a HYBRID index (RRF 1/(rank + 60), lists not cut)."""
    index = f"{args.collection}_upstash"
    base = f"/upstash/{index}"

    def prepare(http):
        info = http.post(f"{base}/info")
        result = (info.json().get("result") or {}) if info.status_code == 200 else {}
        if args.skip_load and result.get("vectorCount") == corpus.n:
            log(f"reusing Upstash index {index}")
            return
        http.delete(base)
        check(
            http.put(
                base, json={"dimension": 384, "similarityFunction": "COSINE", "indexType": "HYBRID"}
            ),
            "create Upstash HYBRID index",
        )
        for lo in range(0, corpus.n, args.upload_batch):
            hi = min(lo + args.upload_batch, corpus.n)
            rows = []
            for i in range(lo, hi):
                dims, vals = corpus.doc(i)
                rows.append(
                    {
                        "id": str(i),
                        "vector": corpus.dense[i].tolist(),
                        "sparseVector": {"indices": dims.tolist(), "values": vals.tolist()},
                    }
                )
            check(
                http.post(
                    f"{base}/upsert",
                    content=encode(rows),
                    headers={"Content-Type": "application/json"},
                ),
                "Upstash upsert",
            )

    def start(http, qi):
        body = {
            "vector": corpus.query_dense[qi].tolist(),
            "sparseVector": sparse_query(corpus, qi),
            "topK": PAGE,
            "fusionAlgorithm": "RRF",
            "weightingStrategy": "IDF",
            "includeVectors": False,
            "includeMetadata": False,
            "includeData": False,
            "maxIdle": 3600,
        }
        r = http.post(f"{base}/resumable-query", json=body)
        doc = check(r, "Upstash resumable-query")["result"]
        return doc["uuid"], [int(s["id"]) for s in doc["scores"]], r

    def nxt(http, handle):
        r = http.post(f"{base}/resumable-query-next", json={"uuid": handle, "additionalK": PAGE})
        return [int(s["id"]) for s in check(r, "Upstash resumable-query-next")["result"]], r

    def end(http, handle):
        http.post(f"{base}/resumable-query-end", json={"uuid": handle})

    return Dialect("upstash", prepare, start, nxt, end, UPSTASH_RRF_K, None)


def server_ms(r: Any) -> float:
    m = re.search(r"dur=([0-9.]+)", r.headers.get("server-timing", ""))
    return float(m.group(1)) if m else math.nan


def bench_resumable(http, corpus, ref, args, rep) -> list[dict]:
    """Walk sessions to page --resumable-pages; per-page latency (client and Server-Timing),
    duplicates, and agreement with the exact fusion of the full (or cut) lists."""
    dialect = (qdrant_dialect if args.resumable_dialect == "qdrant" else upstash_dialect)(
        corpus, args
    )
    dialect.prepare(http)
    pages = args.resumable_pages
    depth = pages * PAGE
    sessions = min(args.resumable_queries, len(corpus.query_dims))
    log(
        f"resumable hybrid ({dialect.name} dialect): {sessions} sessions x {pages} pages "
        "(+2 warm-up sessions)"
    )
    rows = []
    for s in range(-2, sessions):
        qi = (s + 2) % len(corpus.query_dims) if s < 0 else s
        lat, srv, ids = [], [], []
        t0 = time.perf_counter()
        handle, first, r = dialect.start(http, qi)
        lat.append(time.perf_counter() - t0)
        srv.append(server_ms(r))
        ids.append(first)
        for _ in range(pages - 1):
            t0 = time.perf_counter()
            page, r = dialect.next(http, handle)
            lat.append(time.perf_counter() - t0)
            srv.append(server_ms(r))
            ids.append(page)
        dialect.end(http, handle)
        if s < 0:
            continue
        flat = [x for p in ids for x in p]
        wants = resumable_references(http, corpus, ref, args, dialect, qi, depth)
        row = {
            "query": qi,
            "returned": len(flat),
            "duplicates": len(flat) - len(set(flat)),
            **{f"ms_p{p}": round(lat[p - 1] * 1000, 3) for p in (1, 10, 100) if p <= pages},
            **{f"server_ms_p{p}": srv[p - 1] for p in (1, 10, 100) if p <= pages},
            "ms_all": [round(x * 1000, 3) for x in lat],
        }
        for name, want in wants.items():
            row[f"page1_identical_{name}"] = ids[0] == want[:PAGE]
            row[f"overlap_{name}"] = round(len(set(flat) & set(want)) / max(1, len(want)), 4)
            row[f"same_order_{name}"] = flat == want
            row[f"first_difference_{name}"] = next(
                (i for i, (a, b) in enumerate(zip(flat, want, strict=False)) if a != b),
                min(len(flat), len(want)),
            )
        if dialect.oneshot:
            try:
                same = dialect.oneshot(http, qi, depth)
                row["same_as_one_request"] = same == flat
                for name, want in wants.items():
                    row[f"one_request_identical_{name}"] = same == want
            except WaypointUnavailable as err:
                row["same_as_one_request"] = str(err)[:200]
        rep.add(phase="resumable", system=WAYPOINT_HYBRID, dialect=dialect.name, **row)
        rows.append(row)
    return rows


def resumable_references(http, corpus, ref, args, dialect, qi: int, depth: int) -> dict:
    """The exact fused order of the first `depth` results: "cut" fuses each list cut at the
    prefetch limit (Qdrant's prefetch semantics; qdrant dialect only), "full" fuses the
    complete streams (exact cosine over every point, every BM25 match). Equal BM25 scores
    take the service's order where its sparse top-`depth` is exact up to such ties."""
    dense = ref.dense_top(qi, corpus.n).ids.tolist()
    s_ref = ref.sparse_top(qi, None)
    sparse = s_ref.ids.tolist()
    if dialect.name == "qdrant":
        r = http.post(
            f"/collections/{args.collection}/points/query", json=sparse_body(corpus, qi, depth)
        )
        s_srv = [p for p, _ in points_of(check(r, "sparse list"))]
        lookup = ref.sparse_lookup(qi)
        head = Ranked(s_ref.ids[:depth], s_ref.scores[:depth])
        if same_up_to_ties(s_srv, head, lambda ids: lookup[np.asarray(ids)], 0.0):
            taken = set(s_srv)
            sparse = s_srv + [x for x in sparse if x not in taken]
    out = {"full": [p for p, _ in rrf([dense, sparse], dialect.rrf_k, depth)]}
    if dialect.list_limit:
        cut = dialect.list_limit
        out["cut"] = [p for p, _ in rrf([dense[:cut], sparse[:cut]], dialect.rrf_k, depth)]
    return out


def resumable_summary(rows: list[dict], pages: int) -> list[dict]:
    if not rows:
        return []

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
        return round(statistics.median(vals), 3) if vals else None

    # per-page medians over all sessions, then pages 2-10 and 91-100 as bands
    lat = np.array([r["ms_all"] for r in rows])
    band = {
        "pages 2-10": float(np.median(lat[:, 1 : min(10, pages)])),
        "pages 91-100": float(np.median(lat[:, max(1, pages - 10) : pages])),
    }
    out = [
        {"metric": "sessions", "value": len(rows)},
        {"metric": "results per session (median)", "value": med("returned")},
        {"metric": "duplicates (all sessions)", "value": sum(r["duplicates"] for r in rows)},
    ]
    n, depth = len(rows), pages * PAGE

    def count(key: str) -> str:
        return f"{sum(r.get(key) is True for r in rows)}/{n}"

    for name, what in (
        ("cut", f"each list cut at the prefetch limit {depth} (Qdrant semantics)"),
        ("full", "the complete streams (lists not cut)"),
    ):
        if any(f"page1_identical_{name}" in r for r in rows):
            out += [
                {
                    "metric": f"exact fusion of {what}: page 1 identical / all {depth} in "
                    "order / overlap / median position of the first difference",
                    "value": f"{count(f'page1_identical_{name}')} / "
                    f"{count(f'same_order_{name}')} / {med(f'overlap_{name}')} / "
                    f"{med(f'first_difference_{name}')}",
                },
            ]
    if any("same_as_one_request" in r for r in rows):
        out.append(
            {
                "metric": f"pages 1-{pages} = one points/query with the same body and limit "
                f"{depth}",
                "value": count("same_as_one_request"),
            }
        )
        for name in ("cut", "full"):
            if any(f"one_request_identical_{name}" in r for r in rows):
                out.append(
                    {
                        "metric": f"that one request = the exact fusion ({name})",
                        "value": count(f"one_request_identical_{name}"),
                    }
                )
    for p in (1, 10, 100):
        if p <= pages:
            out.append(
                {
                    "metric": f"page {p}: client ms / server ms (median)",
                    "value": f"{med(f'ms_p{p}')} / {med(f'server_ms_p{p}')}",
                }
            )
    if pages >= 100:
        c10, c100 = med("ms_p10"), med("ms_p100")
        s10, s100 = med("server_ms_p10"), med("server_ms_p100")
        ratio = f"{c100 / c10:.2f}x" if c10 and c100 else "n/a"
        sratio = f"{s100 / s10:.2f}x" if s10 and s100 else "n/a"
        out.append(
            {
                "metric": "page 100 / page 10, client (server) — target <= 2x",
                "value": f"{ratio} ({sratio})",
            }
        )
        out.append(
            {
                "metric": "pages 91-100 / pages 2-10, client median",
                "value": f"{band['pages 91-100'] / band['pages 2-10']:.2f}x",
            }
        )
    return out


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------
@dataclass
class System:
    name: str
    group: str
    spec: Any
    server_pids: list[int]
    split_port: int | None
    seconds_per_query: float = 0.0  # sequential latency from a probe
    plan: str = ""


def probe(system: System, n: int = 10) -> float:
    """Median sequential latency over a few queries, in this process (sizes the runs)."""
    client = system.spec.open()
    try:
        for i in range(3):
            client.query(i % len_queries(system.spec))
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            client.query((i + 3) % len_queries(system.spec))
            lat.append(time.perf_counter() - t0)
    finally:
        client.close()
    return statistics.median(lat)


def len_queries(spec: Any) -> int:
    return len(spec.params) if isinstance(spec, PgSpec) else len(spec.bodies)


def queries_per_client(system: System, clients: int, args: argparse.Namespace) -> int:
    """About --duration seconds of work: parallelism up to the CPU count."""
    parallel = min(clients, NCPU)
    n = args.duration * parallel / (max(system.seconds_per_query, 1e-5) * clients)
    return int(min(len_queries(system.spec), max(args.min_queries, n)))


def measure(system: System, clients: int, n: int, args: argparse.Namespace) -> LoadResult:
    """One measurement; again (up to --retries) while foreign load exceeds --max-other-cpu,
    keeping the least disturbed."""
    res, _ = least_noisy(
        lambda: run_clients(
            system.spec,
            n,
            clients,
            warmup=min(args.warmup, n),
            server_pids=system.server_pids,
            split_port=system.split_port,
        ),
        lambda r: r.cpu["other_cpu"],
        args,
    )
    return res


def result_recall(system: System, res: LoadResult, truth: dict) -> float:
    """Mean recall@10 of the measured results against the group's exact answer."""
    total, count = 0.0, 0
    for results, order in zip(res.results, res.orders, strict=True):
        for ids, qi in zip(results, order, strict=True):
            total += truth[system.group](system.name, int(qi), ids)
            count += 1
    return total / max(count, 1)


def summarise(rows: list[dict], clients: Sequence[int]) -> list[dict]:
    """Per group, system and client count: medians over rounds and Waypoint/system ratios."""
    out = []
    keys = []
    for r in rows:
        key = (r["group"], r["system"], r["clients"])
        if key not in keys:
            keys.append(key)
    keys.sort(key=lambda k: ([SPARSE_GROUP, HYBRID_GROUP].index(k[0]), k[2]))
    for group, system, c in keys:
        mine = [r for r in rows if (r["group"], r["system"], r["clients"]) == (group, system, c)]
        line: dict[str, Any] = {
            "group": group,
            "system": system,
            "clients": c,
            "rounds": len(mine),
            "requests": int(statistics.median(r["requests"] for r in mine)),
            "recall10": round(statistics.mean(r["recall10"] for r in mine), 4),
            "qps": round(statistics.median(r["qps"] for r in mine), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in mine), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 3),
            "server_cpu_ms_per_q": round(
                statistics.median(r["server_cpu_ms_per_q"] for r in mine), 3
            ),
            "other_cpu": max((r["other_cpu"] or 0.0) for r in mine),
            "plan": mine[0].get("plan", ""),
        }
        wp = WAYPOINT[group]
        ratios = []
        for r in mine:
            w = next(
                (
                    x
                    for x in rows
                    if x["system"] == wp and x["clients"] == c and x["round"] == r["round"]
                ),
                None,
            )
            if w and system != wp:
                ratios.append(w["qps"] / r["qps"])
        if ratios:
            ratios.sort()
            line["ratio"] = f"{statistics.median(ratios):.2f}x"
            if len(ratios) > 1:
                line["ratio"] += f" ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        out.append(line)
    return out


def target_lines(summary: list[dict], clients: Sequence[int]) -> list[str]:
    lines = []
    for group in (SPARSE_GROUP, HYBRID_GROUP):
        for c in clients:
            base = next(
                (s for s in summary if s["system"] == BASELINE[group] and s["clients"] == c), None
            )
            wp = next(
                (s for s in summary if s["system"] == WAYPOINT[group] and s["clients"] == c), None
            )
            if not base or not wp:
                continue
            ratio = float(base["ratio"].split("x")[0])
            verdict = "meets" if ratio >= TARGET[group] else "misses"
            lines.append(
                f"- {group}, {c} client(s): {WAYPOINT[group]} {wp['qps']:.0f} QPS / "
                f"{BASELINE[group]} {base['qps']:.0f} QPS = **{ratio:.2f}x** "
                f"({verdict} the >= {TARGET[group]:.0f}x target)"
            )
    return lines


# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = shared_dir(args.shared) / "data" / "wordnet-minilm"
    rep = JsonlWriter(args.out, run_id=time.strftime("%Y%m%dT%H%M%S"))
    rep.add(phase="env", **machine_info(), argv=sys.argv[1:])

    t0 = time.perf_counter()
    corpus = build_corpus(data, args.points, args.queries)
    nnz = np.diff(corpus.doc_ptr)
    qlen = [len(d) for d in corpus.query_dims]
    log(
        f"corpus: {corpus.n} passages, vocabulary {corpus.vocab_size}, non-zeros/doc mean "
        f"{nnz.mean():.1f} max {nnz.max()}, empty docs {int((nnz == 0).sum())}; "
        f"{len(qlen)} queries (skipped {corpus.skipped_queries} with no known term), "
        f"terms/query mean {np.mean(qlen):.1f} max {max(qlen)} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    ref = Reference(corpus)
    L = args.prefetch_limit
    t0 = time.perf_counter()
    ref_dense = ref.dense_top_all(max(L, K))
    ref_sparse10 = [ref.sparse_top(qi, K) for qi in range(len(qlen))]
    ref_fused10 = [
        [
            p
            for p, _ in rrf(
                [ref_dense[qi].ids[:L].tolist(), ref.sparse_top(qi, L).ids.tolist()],
                QDRANT_RRF_K,
                K,
            )
        ]
        for qi in range(len(qlen))
    ]
    matches = [len(ref.sparse_matches(qi)[0]) for qi in range(len(qlen))]
    log(
        f"exact references ready ({time.perf_counter() - t0:.1f} s); BM25 matches per query: "
        f"median {int(np.median(matches))}, max {max(matches)}"
    )
    rep.add(
        phase="corpus",
        points=corpus.n,
        vocabulary=corpus.vocab_size,
        nnz_mean=round(float(nnz.mean()), 2),
        nnz_max=int(nnz.max()),
        queries=len(qlen),
        skipped_queries=corpus.skipped_queries,
        terms_per_query=round(float(np.mean(qlen)), 2),
        matches_per_query_median=int(np.median(matches)),
        signature=corpus.signature,
    )

    def sparse_truth(system: str, qi: int, ids: list[int]) -> float:
        return tie_recall(ids, ref_sparse10[qi], ref.sparse_lookup(qi))

    def hybrid_truth(system: str, qi: int, ids: list[int]) -> float:
        # Waypoint: the exact fusion with its own order of equal scores, from the check
        fused = checks.get("hybrid", {}).get("truth") if system == WAYPOINT_HYBRID else None
        want = fused[qi] if fused else ref_fused10[qi]
        return len(set(ids[:K]) & set(want)) / max(1, len(want))

    truth = {SPARSE_GROUP: sparse_truth, HYBRID_GROUP: hybrid_truth}
    systems: list[System] = []
    checks: dict[str, Any] = {}
    notes: list[str] = []
    dense_ef_pg = max(args.dense_ef or 100, L)  # ef_search below L would cut the CTE short

    with contextlib.ExitStack() as stack:
        if not args.skip_postgres:
            kw = setup_postgres(args)
            asyncio.run(pg_load(kw, corpus, args, rep))
            pids = asyncio.run(pg_server_pids(kw))
            for name, (group, spec) in pg_specs(kw, corpus, args, dense_ef_pg).items():
                plan = asyncio.run(pg_explain(kw, spec))
                systems.append(System(name, group, spec, pids, None, plan=plan))
                log(f"{name}: plan {plan}")
            recall = asyncio.run(pg_dense_recall(kw, corpus, ref_dense, dense_ef_pg, L))
            checks["sql_dense_recall"] = round(recall, 4)
            rep.add(
                phase="check",
                system=SQL_HYBRID,
                dense_cte_recall=round(recall, 4),
                ef_search=dense_ef_pg,
                L=L,
            )

        http = None
        resumable_rows: list[dict] = []
        if not args.baselines_only:
            import httpx

            try:
                svc = stack.enter_context(started_service(args))
                http = stack.enter_context(httpx.Client(base_url=svc.url, timeout=600))
                upload(http, svc, corpus, args, rep)
                for name, (group, spec) in waypoint_specs(svc, corpus, args).items():
                    try:
                        if name == WAYPOINT_SPARSE:
                            checks["sparse"] = check_sparse(http, corpus, ref, args, rep)
                        else:
                            checks["hybrid"] = check_hybrid(http, corpus, ref, ref_dense, args, rep)
                    except WaypointUnavailable as err:
                        notes.append(f"{name}: skipped, {err}")
                        log(f"{name}: skipped: {err}")
                        continue
                    systems.append(System(name, group, spec, svc.server_pids, url_port(svc.url)))
                if not args.skip_resumable:
                    try:
                        resumable_rows = bench_resumable(http, corpus, ref, args, rep)
                    except WaypointUnavailable as err:
                        notes.append(f"resumable hybrid: skipped, {err}")
                        log(f"resumable hybrid: skipped: {err}")
            except (WaypointUnavailable, RuntimeError, httpx.HTTPError) as err:
                notes.append(f"Waypoint: stopped, {type(err).__name__}: {err}")
                log(f"Waypoint stopped: {err}")

        for system in list(systems):
            try:
                system.seconds_per_query = probe(system)
            except Exception as err:  # a refused or failing query: report it, measure the rest
                notes.append(f"{system.name}: not measured, {type(err).__name__}: {err}")
                log(f"{system.name}: not measured: {err}")
                systems.remove(system)
                continue
            log(f"{system.name}: {system.seconds_per_query * 1000:.2f} ms per query sequentially")
        rows: list[dict] = []
        for rnd in range(args.rounds):
            order = list(systems) if rnd % 2 == 0 else systems[::-1]
            for c in args.clients:
                for system in order:
                    if system not in systems:
                        continue
                    n = queries_per_client(system, c, args)
                    log(
                        f"round {rnd + 1}/{args.rounds}: {system.name}, {c} client(s), "
                        f"{n} queries each"
                    )
                    try:
                        res = measure(system, c, n, args)
                    except RuntimeError as err:  # a client failed: drop the system, go on
                        notes.append(f"{system.name}: measurement failed, {err}"[:600])
                        log(f"{system.name}: measurement failed: {err}")
                        systems.remove(system)
                        continue
                    stats = res.stats()
                    plans = sorted(k.split(":", 1)[1] for k in res.info if k.startswith("plan:"))
                    row = rep.add(
                        phase="search",
                        group=system.group,
                        system=system.name,
                        round=rnd,
                        clients=c,
                        requests=res.requests,
                        recall10=round(result_recall(system, res, truth), 4),
                        **stats,
                        server_cpu_ms_per_q=round(res.cpu["server_cpu_s"] * 1000 / res.requests, 3),
                        client_cpu_ms_per_q=round(res.cpu["client_cpu_s"] * 1000 / res.requests, 3),
                        other_cpu=res.cpu["other_cpu"],
                        plan=",".join(p for p in plans if p != "None") or system.plan,
                    )
                    rows.append(row)

    print_report(args, corpus, rows, checks, notes, resumable_rows, rep.rows)
    return 0


def print_report(args, corpus, rows, checks, notes, resumable_rows, rep_rows) -> None:
    print(
        f"## bench_sparse: wordnet-minilm, {corpus.n} passages, {len(corpus.query_dims)} "
        f"queries, k={K}, L={args.prefetch_limit}, {args.rounds} round(s)\n"
    )
    print(
        f"Vocabulary {corpus.vocab_size} terms; BM25 k1={BM25_K1} b={BM25_B}; IDF applied "
        "by the service (modifier idf), baked into pgvector's query values. Full-text: "
        "to_tsquery('english', OR of the query terms), ts_rank_cd, GIN. SQL hybrid: HNSW "
        f"ef_search={max(args.dense_ef or 100, args.prefetch_limit)} + full-text, "
        f"RRF k={SQL_RRF_K}; Waypoint hybrid: RRF k={QDRANT_RRF_K} (Qdrant).\n"
    )
    summary = summarise(rows, args.clients)
    cols = [
        ("group", "group"),
        ("system", "system"),
        ("clients", "clients"),
        ("requests", "requests"),
        ("recall10", "recall@10 vs exact"),
        ("qps", "QPS"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("server_cpu_ms_per_q", "server CPU ms/q"),
        ("other_cpu", "other_cpu"),
        ("ratio", "Waypoint ÷ this (range)"),
        ("plan", "plan"),
    ]
    if summary:
        print(markdown_table(summary, cols))
        print(
            "\nrecall@10 vs exact: sparse rows against the exact BM25 top 10 (ties count); "
            "hybrid rows against the exact RRF (k=2) of exact cosine and BM25 top-L lists, "
            "which the SQL recipe (ts_rank_cd, k=60) is not expected to reproduce."
        )
    lines = target_lines(summary, args.clients)
    if lines:
        print("\n### Targets\n\n" + "\n".join(lines))
    print("\n### Correctness\n")
    s = checks.get("sparse")
    if s:
        print(
            f"- sparse: recall@10 vs exact BM25 = **{s['recall10']}** "
            f"({s['queries_all_found']}/{s['queries']} queries complete; target 1.0); "
            f"queries with a score off by > {SCORE_RTOL:g} relative: "
            f"{s['queries_score_mismatch']}; out of order: {s['queries_out_of_order']}; "
            f"wrong result count: {s['queries_wrong_count']}"
            + (f"; first mismatch {s['example_mismatch']}" if s["example_mismatch"] else "")
        )
    h = checks.get("hybrid")
    if h:
        n = h["queries"]
        print(
            f"- hybrid: fused top-10 identical to the exact numpy RRF = "
            f"**{h.get('identical_exact', 0)}/{n}** (ids in order, scores to 1e-6; where the "
            "service's list is exact but orders equal scores differently, its order is used); "
            f"same ids in the same order: {h.get('same_ids_exact', 0)}/{n}"
        )
        print(
            f"  - identical to the RRF of the service's own prefetch lists (fusion alone): "
            f"{h.get('identical_own_lists', 0)}/{n}; with ties by id only: "
            f"{h.get('identical_strict_id_ties', 0)}/{n}"
        )
        print(
            f"  - prefetch lists exact (up to ties): sparse {h.get('sparse_prefetch_exact', 0)}"
            f"/{n}, dense {h.get('dense_prefetch_exact', 0)}/{n}; dense recall@L "
            f"{h['dense_prefetch_recall']}"
        )
        if h.get("exact_dense_leg_error"):
            print(
                f"  - dense prefetch with params.exact=true: not accepted "
                f"({h['exact_dense_leg_error']})"
            )
        else:
            print(
                f"  - with params.exact=true in the dense prefetch: identical "
                f"{h.get('identical_exact_dense_leg', 0)}/{n}"
            )
        if h.get("example_mismatch"):
            print(f"  - first mismatch: {h['example_mismatch']}")
    if "sql_dense_recall" in checks:
        print(
            f"- SQL recipe's dense CTE (pgvector HNSW) recall@{args.prefetch_limit} vs exact "
            f"cosine: {checks['sql_dense_recall']}"
        )
    if resumable_rows:
        print(f"\n### Resumable hybrid query ({args.resumable_dialect} dialect), pages of {PAGE}\n")
        print(
            markdown_table(
                resumable_summary(resumable_rows, args.resumable_pages),
                [("metric", "metric"), ("value", "value")],
            )
        )
    loads = [r for r in rep_rows if r.get("phase") == "load"]
    if loads:
        print("\n### Loading\n")
        print(
            markdown_table(
                loads,
                [
                    ("system", "system"),
                    ("step", "step"),
                    ("seconds", "seconds"),
                    ("points_per_s", "points/s"),
                ],
            )
        )
    if notes:
        print("\n### Skipped\n\n" + "\n".join(f"- {n}" for n in notes))
    noisy = [r for r in rows if (r.get("other_cpu") or 0) > 0.1]
    if noisy:
        print(f"\nWARNING: {len(noisy)} measurements with other_cpu > 0.1 (foreign load).")
    print(f"\nraw rows: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
