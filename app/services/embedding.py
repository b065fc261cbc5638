"""Texts to vectors for both dialects, in the CPU pool.

Embedding is the most CPU-hungry thing a request can ask for (a MiniLM forward pass costs
milliseconds per text), so it never runs on the event loop, and a long list of texts goes
to the pool in chunks: searches queued behind it get a thread between chunks instead of
waiting for the whole upsert. Models load on first use, once per worker process
(`app.embedding.minilm.get_model`); their weights are memory-mapped, so workers share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.embedding import registry
from app.embedding.registry import Embedding, TextModel
from app.errors import BadRequest
from app.services.cpu import CpuPool

CHUNK_TEXTS = 64  # texts per pool call (two MiniLM batches)


class EmbeddingService:
    def __init__(self, cpu: CpuPool) -> None:
        self.cpu = cpu

    @staticmethod
    def model(name: Any) -> TextModel:
        """The model called `name`; BadRequest lists the models there are."""
        try:
            return registry.find(name)
        except registry.UnknownModel as exc:
            raise BadRequest(str(exc)) from None

    async def embed(
        self, model: TextModel, texts: Sequence[str], *, query: bool, options: Any = None
    ) -> list[Embedding]:
        """One vector per text, as a document (stored) or a query (searched with)."""
        for text in texts:
            check_text(text)
        out: list[Embedding] = []
        for start in range(0, len(texts), CHUNK_TEXTS):
            chunk = list(texts[start : start + CHUNK_TEXTS])
            out.extend(await self.cpu.run(_embed, model, chunk, query, options))
        return out


def check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise BadRequest("The text to embed must be a string")
    if not text.strip():
        raise BadRequest("The text to embed is empty")


def _embed(model: TextModel, texts: list[str], query: bool, options: Any) -> list[Embedding]:
    try:
        return model.embed(texts, query=query, options=options)
    except registry.BadOptions as exc:
        raise BadRequest(str(exc)) from None
